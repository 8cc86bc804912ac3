"""Find this test session's Ray worker processes by what they run (for fault injection)."""

from __future__ import annotations

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
