"""Find this test session's Ray processes: workers by what they run (fault injection), sockets they listen on."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path


def _descendants(pid: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        for k in kids.get(todo.pop(), []):
            out.append(k)
            todo.append(k)
    return out


def _title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def ray_workers(match: str) -> list[int]:
    """PIDs of Ray worker processes started by *this* process (not another Ray on the machine) whose title starts
    with ``ray::`` and contains ``match``: Ray titles a worker after the task or actor method it is running."""
    return [pid for pid in _descendants(os.getpid()) if _title(pid).startswith("ray::") and match in _title(pid)]


def _listening_inodes() -> dict[int, str]:
    """Socket inode → ``host:port`` for every listening TCP socket on the box (IPv4 and IPv6, from /proc/net)."""
    out: dict[int, str] = {}
    for name, width in (("tcp", 8), ("tcp6", 32)):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] != "0A":  # TCP_LISTEN
                continue
            hexip, hexport = f[1].split(":")
            raw = bytes.fromhex(hexip)
            # /proc/net prints each 32-bit word in host (little-endian) order
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            ip = ipaddress.ip_address(raw) if width == 8 else ipaddress.IPv6Address(raw)
            out[int(f[9])] = f"{ip}:{int(hexport, 16)}"
    return out


def listening_addresses(pids: list[int]) -> dict[str, str]:
    """``host:port`` → process title for the TCP sockets the given processes listen on."""
    inodes = _listening_inodes()
    out: dict[str, str] = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and int(target[8:-1]) in inodes:
                out[inodes[int(target[8:-1])]] = _title(pid)[:80]
    return out


def process_tree(pid: int) -> list[int]:
    """``pid`` and everything it spawned (still running)."""
    return [pid, *_descendants(pid)]


def is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0]
    ip = ipaddress.ip_address(host)
    return ip.is_loopback or (getattr(ip, "ipv4_mapped", None) is not None and ip.ipv4_mapped.is_loopback)


def kill_driver_when(cmd: list[str], env: dict[str, str], ready, timeout_s: float = 400,
                     poll_s: float = 0.5) -> tuple[int, str]:
    """Run ``cmd`` (a job driver) in its own process group, SIGKILL the group as soon as ``ready()`` is true (or
    after ``timeout_s``, or when it exits by itself); return its exit status and output."""
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + timeout_s
        while proc.poll() is None and time.time() < deadline and not ready():
            time.sleep(poll_s)
        os.killpg(proc.pid, signal.SIGKILL)
        log = proc.communicate(timeout=30)[0].decode(errors="replace")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, log
