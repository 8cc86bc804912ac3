"""Atomic output writes: write to a temporary file beside the target, then ``os.replace`` it into place.

A job killed mid-write leaves either the old file or the new one — never a truncated ``meta.json``, bundle or
summary that a later run would trust. Temporary names start with ``.`` (hidden from folder walks) and are removed
when the write fails.
"""

from __future__ import annotations

import json
import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; on success it replaces ``path`` (fsynced), on error it is removed."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """``path.write_text(text)``, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike[str], obj: Any, **kwargs: Any) -> Path:
    """``obj`` as indented JSON, atomically (``kwargs`` go to :func:`json.dumps`)."""
    return write_text(path, json.dumps(obj, indent=2, **kwargs))


def savefig(fig: Any, path: str | os.PathLike[str], **kwargs: Any) -> Path:
    """``fig.savefig(path)`` atomically (its folder made; the format from ``path``'s suffix), then the figure closed:
    every plot function ends with it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", **kwargs)
    finally:
        plt.close(fig)
    return path


class Busy(RuntimeError):
    """Another process holds the lock :func:`exclusive` asked for."""


@contextmanager
def exclusive(path: str | os.PathLike[str], what: str, error: type[Exception] = Busy) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created; it names the holder's pid) for the ``with`` block, so two
    runs never write one output folder at once; raises ``error`` (:class:`Busy`) naming ``what`` and the holder when it
    is taken.
    Released when the block ends or the process dies (a SIGKILLed run leaves nothing to clean). Where the filesystem
    has no locks (some network mounts), it warns and goes on."""
    import fcntl
    import logging

    path = Path(path)
    f = open(path, "a+")
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "?"
            raise error(f"{what} is in use by another run (pid {holder}; lock {path}): wait for it to end, or use "
                       "another output folder") from None
        except OSError as exc:
            logging.getLogger("genre_ray").warning("%s: no lock on %s (%s); do not start two runs into it", what,
                                                   path, exc)
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        yield
    finally:
        f.close()
