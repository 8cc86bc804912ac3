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
    """``fig.savefig(path)`` atomically; the format comes from ``path``'s suffix."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, **kwargs)
    return Path(path)
