"""Pins for genre_ray/atomic.py: what makes a write atomic and durable, and the lock's details."""

from __future__ import annotations

import os

import pytest

from genre_ray import atomic


def test_the_new_file_is_fsynced_before_it_replaces_the_old(tmp_path, monkeypatch):
    target = tmp_path / "meta.json"
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))),
                                                          real_fsync(fd))[1])
    monkeypatch.setattr(atomic.os, "replace", lambda a, b: (events.append(("replace", str(a))), real_replace(a, b))[1])
    atomic.write_text(target, "hello")
    assert target.read_text() == "hello"
    kinds = [e[0] for e in events]
    assert kinds == ["fsync", "replace"]
    assert events[0][1] == events[1][1]  # the temporary itself is fsynced, then renamed into place


def test_the_target_is_replaced_by_rename_not_rewritten_in_place(tmp_path):
    """A reader that opened the old file keeps reading the old bytes (a rename swaps the inode; a copy onto the
    target would truncate it under the reader — a crash mid-copy leaves a truncated file)."""
    target = tmp_path / "summary.json"
    target.write_text("old contents")
    old_inode = target.stat().st_ino
    with open(target) as reader:
        atomic.write_text(target, "new contents")
        assert reader.read() == "old contents"
    assert target.read_text() == "new contents"
    assert target.stat().st_ino != old_inode


def test_temporaries_are_hidden_while_being_written(tmp_path):
    with atomic.atomic_path(tmp_path / "x.parquet") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".") and tmp.name.endswith(".tmp")
        tmp.write_text("x")


def test_the_lock_file_names_only_the_current_holder(tmp_path):
    lock = tmp_path / ".lock"
    lock.write_text("99999999999\nstale text from an older holder\n")
    with atomic.exclusive(lock, "out=x"):
        assert lock.read_text() == f"{os.getpid()}\n"


def test_the_lock_is_exclusive_and_raises_the_callers_error(tmp_path):
    class Taken(Exception):
        pass

    lock = tmp_path / ".lock"
    with atomic.exclusive(lock, "out=x"):
        with pytest.raises(Taken, match="out=x is in use"):
            with atomic.exclusive(lock, "out=x", error=Taken):
                pass


def test_savefig_writes_the_format_its_suffix_names(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    out = atomic.savefig(fig, tmp_path / "deep" / "plot.svg")
    assert out.read_bytes().lstrip().startswith(b"<?xml") and b"<svg" in out.read_bytes()
    assert not plt.fignum_exists(fig.number)  # closed: plot functions never leak figures
    fig2, _ = plt.subplots()
    assert atomic.savefig(fig2, tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
