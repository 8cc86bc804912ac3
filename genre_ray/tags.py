"""Write a genre into an audio file's tags with mutagen — metadata only, the audio data is never rewritten.

Tag writers are looked up by mutagen file type (:data:`TAG_WRITERS`); anything mutagen cannot open, or has
no writer for, is reported as ``skipped`` with the reason. No Ray here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from genre_ray.registry import Registry

TagWriter = Callable[[Any, str, bool], str]
"""``(mutagen file object, genre, dry_run) → previous genre ("" if none)``; saves unless ``dry_run``."""

TAG_WRITERS: Registry[TagWriter] = Registry("tag writer")


class Unsafe(Exception):
    """A file that cannot be tagged without changing what it plays: reported as ``skipped``, left as it is."""


@dataclass
class TagResult:
    path: str
    genre: str
    previous: str
    action: str  # written | would-write | unchanged | skipped
    reason: str = ""


def _easy(f: Any, genre: str, dry_run: bool) -> str:
    """Formats with mutagen's "easy" key-value interface (ID3 via EasyID3, FLAC/Ogg Vorbis comments, MP4)."""
    if f.tags is None:
        f.add_tags()
    previous = "; ".join(f.tags.get("genre", []))
    if previous != genre and not dry_run:
        f.tags["genre"] = [genre]
        f.save()
    return previous


def iff_mismatch(path: str | Path) -> str:
    """Why a WAV/AIFF file's chunk sizes do not add up to its length ("" when they do): its container size, then
    every chunk's declared size, walked to the end of the file. A cut-off recording, a streaming WAV (sizes left
    at 0 or 0xFFFFFFFF) or a truncated download declares more (or less) than it holds; appending an ID3 chunk
    to such a file lands inside the declared audio data, so decoders would play the tag's bytes as audio."""
    size = Path(path).stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"FORM"):
            return f"not a RIFF/FORM container ({head[:4]!r})"
        endian = "<" if head[:4] == b"RIFF" else ">"
        declared = struct.unpack(endian + "I", head[4:8])[0] + 8
        if declared != size:
            return f"its header declares {declared} bytes, the file has {size}"
        pos = 12
        while pos + 8 <= size:
            fh.seek(pos)
            cid, csize = struct.unpack(endian + "4sI", fh.read(8))
            end = pos + 8 + csize + (csize & 1)
            if end > size + (csize & 1):
                return f"its {cid.decode('latin-1')!r} chunk declares {csize} bytes past the end of the file"
            pos = end
    return ""


def _id3_frames(f: Any, genre: str, dry_run: bool) -> str:
    """WAV/AIFF: an ID3 chunk with a TCON frame — only where the chunk sizes add up (:func:`iff_mismatch`)."""
    from mutagen.id3 import TCON

    bad = iff_mismatch(f.filename)
    if bad:
        raise Unsafe(f"not tagged: {bad} (cut off or still being written?); a tag added now would be played as "
                     "audio")
    if f.tags is None:
        f.add_tags()
    previous = "; ".join(f.tags["TCON"].text) if "TCON" in f.tags else ""
    if previous != genre and not dry_run:
        f.tags.setall("TCON", [TCON(encoding=3, text=[genre])])
        f.save()
    return previous


for _name in ("EasyMP3", "EasyID3FileType", "FLAC", "OggVorbis", "OggOpus", "OggFLAC", "EasyMP4", "EasyTrueAudio"):
    TAG_WRITERS.register(_name)(_easy)
for _name in ("WAVE", "AIFF"):
    TAG_WRITERS.register(_name)(_id3_frames)


def write_genre_tag(path: str | Path, genre: str, dry_run: bool = False) -> TagResult:
    """Set the genre tag of ``path`` to ``genre`` (or, with ``dry_run``, say what would change). Never raises."""
    import mutagen

    path = str(path)
    try:
        f = mutagen.File(path, easy=True)
        if f is None:
            return TagResult(path, genre, "", "skipped", "mutagen does not recognise this file type")
        kind = type(f).__name__
        if kind not in TAG_WRITERS:
            return TagResult(path, genre, "", "skipped", f"no tag writer for {kind}")
    except Exception as exc:  # a file whose tags cannot be read: reported, never fatal
        return TagResult(path, genre, "", "skipped", f"{type(exc).__name__}: {exc}")
    try:
        previous = TAG_WRITERS[kind](f, genre, dry_run)
    except Unsafe as exc:
        return TagResult(path, genre, "", "skipped", str(exc))
    except Exception as exc:  # read, but the write failed (read-only, immutable, disk full): not a skip
        return TagResult(path, genre, "", "failed", f"{type(exc).__name__}: {exc}")
    if previous == genre:
        return TagResult(path, genre, previous, "unchanged")
    return TagResult(path, genre, previous, "would-write" if dry_run else "written")
