"""Tests for genre_ray.catalog: GTZAN folders, FMA tracks.csv, manifests, file walking, ids."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import pandas as pd
import pytest

from genre_ray import catalog
from genre_ray.catalog import (
    AUDIO_EXTENSIONS,
    CATALOGS,
    TABLE_COLUMNS,
    from_fma,
    from_gtzan,
    from_manifest,
    list_audio_files,
    load_catalog,
    track_id,
)


def touch(path: Path, data: bytes = b"RIFF") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def make_gtzan(root: Path, genres: dict[str, int] | None = None, ext: str = ".wav") -> Path:
    for genre, n in (genres or {"blues": 3, "rock": 2, "jazz": 2}).items():
        for i in range(n):
            touch(root / genre / f"{genre}.{i:05d}{ext}")
    return root


def assert_is_track_table(df: pd.DataFrame) -> None:
    assert list(df.columns[: len(TABLE_COLUMNS)]) == list(TABLE_COLUMNS)
    assert df["track_id"].is_unique
    assert list(df["rel_path"]) == sorted(df["rel_path"])
    assert list(df.index) == list(range(len(df)))
    assert all(track_id(r) == t for r, t in zip(df["rel_path"], df["track_id"]))


# ------------------------------------------------------------------------------------------ ids


def test_track_id_is_sha1_prefix_of_posix_relative_path() -> None:
    rel = "blues/blues.00000.wav"
    assert track_id(rel) == hashlib.sha1(rel.encode()).hexdigest()[:16]
    assert track_id(Path("blues") / "blues.00000.wav") == track_id(rel)
    assert len(track_id(rel)) == 16 and track_id(rel) != track_id("blues/blues.00001.wav")
    with pytest.raises(ValueError):
        track_id("")


def test_ids_depend_on_relative_path_not_on_mount_point(tmp_path: Path) -> None:
    a = from_gtzan(make_gtzan(tmp_path / "a" / "gtzan"))
    b = from_gtzan(make_gtzan(tmp_path / "elsewhere" / "copy"))
    assert list(a["track_id"]) == list(b["track_id"])
    assert list(a["path"]) != list(b["path"])


@pytest.mark.parametrize("ext, fmt", [(".oga", "OGG"), (".w64", "W64"), (".caf", "CAF"), (".snd", "AU"),
                                      (".aifc", "AIFF")])
def test_audio_extensions_cover_what_the_decoders_read(tmp_path, ext, fmt) -> None:
    """Files the decoders read were left out of a library without a word when their extension was not listed."""
    import numpy as np
    import soundfile as sf

    from genre_ray.audio import decode

    assert all(e == e.lower() and e.startswith(".") for e in AUDIO_EXTENSIONS)
    path = tmp_path / f"song{ext.upper()}"
    sf.write(path, 0.3 * np.sin(np.arange(22_050) * 0.05).astype(np.float32), 22_050, format=fmt)
    assert catalog.is_audio_file(path) and decode(path, 22_050).shape == (22_050,)


# ----------------------------------------------------------------------------- list_audio_files


def test_list_audio_files_sorted_case_insensitive_and_filtered(tmp_path: Path) -> None:
    touch(tmp_path / "b" / "x.WAV")
    touch(tmp_path / "a" / "y.flac")
    touch(tmp_path / "a" / "notes.txt")
    touch(tmp_path / "a" / "._y.flac")  # macOS resource fork: hidden, skipped
    touch(tmp_path / ".cache" / "z.wav")  # hidden folder, skipped
    touch(tmp_path / "top.Mp3")
    found = list_audio_files(tmp_path)
    assert found == sorted(found)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a/y.flac", "b/x.WAV", "top.Mp3"]
    assert [p.name for p in list_audio_files(tmp_path, recursive=False)] == ["top.Mp3"]


def test_list_audio_files_skips_directory_named_like_audio(tmp_path: Path) -> None:
    (tmp_path / "rock" / "album.wav").mkdir(parents=True)
    touch(tmp_path / "rock" / "album.wav" / "track1.mp3")
    touch(tmp_path / "rock" / "song.wav")
    rels = [p.relative_to(tmp_path).as_posix() for p in list_audio_files(tmp_path)]
    assert rels == ["rock/album.wav/track1.mp3", "rock/song.wav"]
    assert "rock/album.wav" not in rels


@pytest.mark.timeout(20)
@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_symlink_loop_does_not_hang(tmp_path: Path) -> None:
    root = make_gtzan(tmp_path / "g")
    os.symlink(root, root / "rock" / "loop")  # rock/loop -> root: a cycle if followed
    os.symlink(root / "blues", root / "blues" / "again.wav")  # symlinked dir named like audio
    target = touch(tmp_path / "outside" / "jazz.00009.wav")
    os.symlink(target, root / "jazz" / "jazz.00009.wav")  # symlinked file: kept
    os.symlink(tmp_path / "nowhere.wav", root / "jazz" / "broken.wav")  # broken link: kept, decode reports it
    notes: dict = {}
    touch(root / "rock" / "._rock.00000.wav")  # a macOS resource fork: hidden
    files = [p.relative_to(root).as_posix() for p in list_audio_files(root, notes=notes)]
    assert len(files) == 9
    assert (notes["hidden"], notes["symlinked_folders"]) == (1, 2)  # counted for the label job's summary, not only logged
    assert "jazz/jazz.00009.wav" in files and "jazz/broken.wav" in files
    assert not any("loop" in f or "again.wav" in f for f in files)
    table = from_gtzan(root)
    assert len(table) == 9


def test_list_audio_files_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing"):
        list_audio_files(tmp_path / "missing")
    f = touch(tmp_path / "a.wav")
    with pytest.raises(NotADirectoryError):
        list_audio_files(f)


# ----------------------------------------------------------------------------------------- GTZAN


def test_from_gtzan_table(tmp_path: Path) -> None:
    root = make_gtzan(tmp_path / "gtzan")
    touch(root / "rock" / "live" / "deep.au")  # deeper: label = first component
    table = from_gtzan(root)
    assert_is_track_table(table)
    assert len(table) == 8
    assert table.set_index("rel_path").loc["rock/live/deep.au", "label"] == "rock"
    assert set(table["label"]) == {"blues", "jazz", "rock"}
    assert all(os.path.isabs(p) and os.path.isfile(p) for p in table["path"])
    assert table["artist"].isna().all() and table["split"].isna().all()
    assert table.loc[0, "rel_path"] == "blues/blues.00000.wav"


def test_from_gtzan_relative_root_gives_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_gtzan(tmp_path / "gtzan")
    monkeypatch.chdir(tmp_path)
    table = from_gtzan("gtzan")
    assert all(os.path.isabs(p) for p in table["path"])
    assert table.loc[0, "path"] == str(tmp_path / "gtzan" / "blues" / "blues.00000.wav")


def test_from_gtzan_skips_loose_files_with_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = make_gtzan(tmp_path / "g", {"pop": 2})
    touch(root / "loose.wav")
    with caplog.at_level(logging.WARNING, logger="genre_ray.catalog"):
        table = from_gtzan(root)
    assert list(table["label"]) == ["pop", "pop"]
    assert "skipped 1 audio file" in caplog.text


def test_from_gtzan_no_tracks_is_a_clear_error(tmp_path: Path) -> None:
    touch(tmp_path / "g" / "readme.txt")
    touch(tmp_path / "g" / "loose.wav")
    with pytest.raises(ValueError, match=r"no tracks found under .*g.*genre folders.*1 file\(s\) directly"):
        from_gtzan(tmp_path / "g")
    with pytest.raises(FileNotFoundError, match="nope"):
        from_gtzan(tmp_path / "nope")


# ------------------------------------------------------------------------------------------- FMA

FMA_ROWS = [
    # track_id, artist, split, subset, genre_top, title
    (2, "AWOL", "training", "small", "Hip-Hop", "Food"),
    (3, "AWOL", "training", "medium", "Hip-Hop", "Electric Ave"),
    (5, "AWOL", "validation", "small", "Hip-Hop", "This World"),
    (10, "Kurt Vile", "test", "small", "Pop", "Freeway"),
    (20, "Chris and Nicky Andrews", "training", "large", "", "Spiritual Level"),  # no genre_top: dropped
    (26, "Chris and Nicky Andrews", "test", "large", "Rock", "Where is your Love?"),
    (134, "AWOL", "validation", "medium", "Hip-Hop", "Street Music"),
    (1000, "Person, With Comma", "training", "small", "Folk", "x"),  # audio missing
]


def write_fma(base: Path, rows=FMA_ROWS, audio_name: str = "fma_small", missing: tuple[int, ...] = (1000,),
              artist_ids: dict[int, int] | None = None) -> tuple[Path, Path]:
    """FMA layout: base/fma_metadata/tracks.csv (3-line header as published) + base/<audio_name>/NNN/NNNNNN.mp3.
    An artist's id is its first row's position among the names, unless ``artist_ids`` (track id → artist id)."""
    names = list(dict.fromkeys(r[1] for r in rows))
    meta = base / "fma_metadata"
    meta.mkdir(parents=True, exist_ok=True)
    lines = [
        ",album,artist,artist,set,set,track,track,track",
        ",title,id,name,split,subset,duration,genre_top,title",
        "track_id,,,,,,,,",
    ]
    for tid, artist, split, subset, genre, title in rows:
        quoted = f'"{artist}"' if "," in artist else artist
        aid = (artist_ids or {}).get(tid, names.index(artist) + 1)
        lines.append(f"{tid},Some Album,{aid},{quoted},{split},{subset},30,{genre},{title}")
    csv_path = meta / "tracks.csv"
    csv_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    audio = base / audio_name
    for tid, *_ in rows:
        if tid not in missing:
            touch(audio / catalog.fma_rel_path(tid), b"ID3")
    return csv_path, audio


def test_fma_rel_path() -> None:
    assert catalog.fma_rel_path(2) == "000/000002.mp3"
    assert catalog.fma_rel_path(155066) == "155/155066.mp3"


def test_from_fma_small(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    csv_path, audio = write_fma(tmp_path)
    with caplog.at_level(logging.WARNING, logger="genre_ray.catalog"):
        table = from_fma(csv_path, audio, subset="small")
    assert_is_track_table(table)
    assert list(table["rel_path"]) == ["000/000002.mp3", "000/000005.mp3", "000/000010.mp3"]
    assert list(table["label"]) == ["Hip-Hop", "Hip-Hop", "Pop"]
    assert list(table["artist"]) == ["AWOL (#1)", "AWOL (#1)", "Kurt Vile (#2)"]
    assert list(table["split"]) == ["train", "val", "test"]
    assert table.loc[0, "path"] == str(audio / "000" / "000002.mp3")
    assert "dropped 1 of 4" in caplog.text  # track 1000 has no audio file


def test_from_fma_subsets_nest(tmp_path: Path) -> None:
    csv_path, audio = write_fma(tmp_path)
    medium = from_fma(csv_path, audio, subset="medium")
    assert sorted(medium["rel_path"]) == ["000/000002.mp3", "000/000003.mp3", "000/000005.mp3", "000/000010.mp3", "000/000134.mp3"]
    large = from_fma(csv_path, audio, subset="large")
    everything = from_fma(csv_path, audio, subset=None)
    assert list(large["rel_path"]) == list(everything["rel_path"])
    assert len(large) == 6  # 8 rows - 1 without genre_top - 1 without audio
    assert "000/000020.mp3" not in set(large["rel_path"])
    with pytest.raises(ValueError, match="unknown FMA subset 'tiny'"):
        from_fma(csv_path, audio, subset="tiny")


def test_from_fma_subset_from_the_audio_folder_and_artists_by_id(tmp_path: Path) -> None:
    """The subset was fixed at small: an fma_medium folder lost its medium tracks without a word. Two artists who
    share a name ("Unknown") were one group, so FMA's own split read as artist leakage."""
    rows = [*FMA_ROWS[:4], (40, "Unknown", "training", "small", "Pop", "a"), (41, "Unknown", "test", "small", "Pop", "b")]
    csv_path, audio = write_fma(tmp_path, rows=rows, audio_name="fma_medium", artist_ids={40: 77, 41: 78})
    table = from_fma(csv_path)  # subset auto: medium, from the folder's name
    assert "000/000003.mp3" in set(table["rel_path"]) and len(table) == 6
    assert set(table.loc[table["label"] == "Pop", "artist"]) == {"Kurt Vile (#2)", "Unknown (#77)", "Unknown (#78)"}
    assert len(from_fma(csv_path, subset="small")) == 5


def test_from_fma_errors(tmp_path: Path) -> None:
    csv_path, audio = write_fma(tmp_path)
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        from_fma(tmp_path / "nope.csv", audio)
    with pytest.raises(FileNotFoundError, match="no_audio"):
        from_fma(csv_path, tmp_path / "no_audio")
    empty = tmp_path / "empty_audio"
    empty.mkdir()
    with pytest.raises(ValueError, match="no FMA tracks found"):
        from_fma(csv_path, empty)
    bad = tmp_path / "bad" / "tracks.csv"
    bad.parent.mkdir()
    bad.write_text(",track\n,title\ntrack_id,\n2,x\n")
    with pytest.raises(ValueError, match="missing FMA column"):
        from_fma(bad, audio)


def test_load_catalog_auto_fma_finds_sibling_audio_folder(tmp_path: Path) -> None:
    csv_path, audio = write_fma(tmp_path)
    table = load_catalog(str(csv_path))  # fma_metadata/tracks.csv with fma_small/ beside fma_metadata/
    assert list(table["split"]) == ["train", "val", "test"]
    assert table.loc[0, "path"].startswith(str(audio.resolve()))
    # explicit audio_dir + subset go through load_catalog's keywords
    assert len(load_catalog(csv_path, audio_dir=audio, subset="medium")) == 5


def test_load_catalog_fma_ambiguous_audio_folder_requires_audio_dir(tmp_path: Path) -> None:
    csv_path, audio = write_fma(tmp_path)
    (tmp_path / "fma_medium").mkdir()
    with pytest.raises(ValueError, match="audio_dir"):
        load_catalog(csv_path)
    assert len(load_catalog(csv_path, audio_dir=audio)) == 3


def test_tracks_csv_without_fma_header_is_a_manifest(tmp_path: Path) -> None:
    touch(tmp_path / "a.wav")
    (tmp_path / "tracks.csv").write_text("path,label\na.wav,rock\n")
    table = load_catalog(tmp_path / "tracks.csv")
    assert list(table["rel_path"]) == ["a.wav"]


# -------------------------------------------------------------------------------------- manifest


def test_from_manifest_csv(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    outside = tmp_path.parent / "elsewhere.wav"
    manifest = tmp_path / "data" / "m.csv"
    pd.DataFrame(
        {
            "path": ["sub/b.flac", "a.wav", str(outside), "s3://bucket/x/c.mp3", "./sub/../d.ogg"],
            "label": ["rock", "pop", "jazz", "rock", "pop"],
            "artist": ["X", "", "Y", None, "Z"],
            "split": ["training", "Valid", "test", None, "val"],
            "duration_s": ["30.0", "29.9", "31", "30", "12"],
        }
    ).to_csv(manifest, index=False)
    table = from_manifest(manifest)
    assert_is_track_table(table)
    by_rel = table.set_index("rel_path")
    base = tmp_path / "data"
    assert by_rel.loc["sub/b.flac", "path"] == str(base / "sub" / "b.flac")
    assert by_rel.loc["a.wav", "path"] == str(base / "a.wav")
    assert by_rel.loc["d.ogg", "path"] == str(base / "d.ogg")  # normalised
    assert by_rel.loc[outside.as_posix(), "path"] == str(outside)  # outside the folder: as given
    assert by_rel.loc["s3://bucket/x/c.mp3", "path"] == "s3://bucket/x/c.mp3"  # URI unchanged
    assert by_rel.loc["sub/b.flac", "split"] == "train"
    assert by_rel.loc["a.wav", "split"] == "val"
    assert by_rel.loc["s3://bucket/x/c.mp3", "split"] is None
    assert by_rel.loc["a.wav", "artist"] is None  # blank → unknown
    assert by_rel.loc["sub/b.flac", "artist"] == "X"
    assert "duration_s" in table.columns  # extra columns carried along
    assert by_rel.loc["sub/b.flac", "track_id"] == track_id("sub/b.flac")


def test_from_manifest_parquet_and_optional_columns(tmp_path: Path) -> None:
    manifest = tmp_path / "m.parquet"
    pd.DataFrame({"path": ["z.wav", "y.wav"], "label": ["a", "b"]}).to_parquet(manifest)
    table = load_catalog(manifest)  # auto → manifest
    assert_is_track_table(table)
    assert list(table["rel_path"]) == ["y.wav", "z.wav"]
    assert table["artist"].isna().all() and table["split"].isna().all()


def test_from_manifest_errors(tmp_path: Path) -> None:
    m = tmp_path / "m.csv"
    m.write_text("file,genre\na.wav,rock\n")
    with pytest.raises(ValueError, match=r"lacks required column\(s\) \['path', 'label'\]"):
        from_manifest(m)
    m.write_text("path\na.wav\n")
    with pytest.raises(ValueError, match=r"\['label'\]"):
        from_manifest(m)
    m.write_text("path,label,split\na.wav,rock,holdout\n")
    with pytest.raises(ValueError, match="unknown split value 'holdout'"):
        from_manifest(m)
    m.write_text("path,label\na.wav,rock\n./a.wav,pop\n")
    with pytest.raises(ValueError, match="more than once"):
        from_manifest(m)
    m.write_text("path,label\na.wav,\n")
    with pytest.raises(ValueError, match="empty 'label'"):
        from_manifest(m)
    m.write_text("path,label\n")
    with pytest.raises(ValueError, match="no tracks found"):
        from_manifest(m)
    with pytest.raises(FileNotFoundError, match="absent.csv"):
        from_manifest(tmp_path / "absent.csv")


def test_labels_differing_only_in_case_or_inner_spacing_are_refused(tmp_path: Path) -> None:
    """"Hip Hop" and "hip  hop" (two spaces) are one genre typed two ways: refused, naming both, rather than two
    classes that split the genre's tracks. Genres that really differ are kept."""
    m = tmp_path / "m.csv"
    pd.DataFrame({"path": ["a.wav", "b.wav", "c.wav"], "label": ["Hip Hop", "hip  hop", "Rock"]}).to_csv(m, index=False)
    with pytest.raises(ValueError, match="differ only in case or spacing") as err:
        from_manifest(m)
    assert "'Hip Hop' (1)" in str(err.value) and "'hip  hop' (1)" in str(err.value) and "Rock" not in str(err.value)
    pd.DataFrame({"path": ["a.wav", "b.wav"], "label": ["Hip Hop", "Hip-Hop"]}).to_csv(m, index=False)
    assert sorted(from_manifest(m)["label"]) == ["Hip Hop", "Hip-Hop"]


# ---------------------------------------------------------------------------------- load_catalog


def test_registry_has_the_three_loaders() -> None:
    assert {"gtzan", "fma", "manifest"} <= set(CATALOGS)
    assert CATALOGS["gtzan"] is from_gtzan and CATALOGS["manifest"] is from_manifest


def test_load_catalog_auto_directory_is_gtzan(tmp_path: Path) -> None:
    root = make_gtzan(tmp_path / "g")
    pd.testing.assert_frame_equal(load_catalog(root), from_gtzan(root))
    pd.testing.assert_frame_equal(load_catalog(str(root), kind="gtzan"), from_gtzan(root))


def test_load_catalog_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown catalog kind 'mtg'.*'fma'.*'gtzan'.*'manifest'"):
        load_catalog(tmp_path, kind="mtg")
    missing = tmp_path / "does" / "not" / "exist"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        load_catalog(missing)
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match="kind="):
        load_catalog(tmp_path / "notes.txt")
    root = make_gtzan(tmp_path / "g")
    with pytest.raises(TypeError, match=r"'gtzan'.*\['audio_dir'\]"):
        load_catalog(root, audio_dir=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no tracks found"):
        load_catalog(tmp_path / "empty")
