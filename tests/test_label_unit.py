"""Labelling without Ray: streamed decode, the once-per-track spectrogram and its windows, bad files, prepare ==
label images, predict (several files, plot), genre tags."""

from __future__ import annotations

import io
import json
import os
import shutil

import numpy as np
import pytest
import soundfile as sf

from genre_ray import audio
from genre_ray.bundle import load_bundle
from genre_ray.cli import main
from genre_ray.features import FEATURE_VERSION, FeatureConfig, TrackWindower, images_from_frames, track_window_images
from genre_ray.inference import STATUS_OK, TrackEnd, WindowBatch, featurize_stream, featurize_track, predict_file
from genre_ray.pipelines.prepare import track_windows
from label_lib import BAD, CLASSES, FEATURES, make_library, sharp_bundle


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    root = tmp_path_factory.mktemp("library")
    return root, make_library(root)


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    return sharp_bundle(tmp_path_factory.mktemp("bundle"))


def _all(batches):
    batches = list(batches)
    return np.concatenate([i for i, _ in batches]), np.concatenate([s for _, s in batches])


def test_decode_stream_matches_decode_for_every_format_rate_and_channels(library):
    root, expected = library
    for path, status in expected.items():
        if status != "ok":
            continue
        whole = audio.decode(path)
        streamed = np.concatenate(list(audio.decode_stream(path, block_s=0.7)))
        assert streamed.shape == whole.shape, path
        np.testing.assert_allclose(streamed, whole, atol=1e-5, err_msg=path)


def test_spectrogram_once_per_track_is_chunking_independent_and_bounded():
    rng = np.random.default_rng(0)
    wave = (0.2 * rng.standard_normal(int(23.3 * FEATURES.sample_rate))).astype(np.float32)
    ref, starts = _all(track_window_images([wave], FEATURES))
    n = audio.window_count(len(wave), FEATURES.window_samples, FEATURES.hop_samples)
    assert ref.shape == (n, *FEATURES.image_shape) and ref.dtype == np.float16
    np.testing.assert_allclose(starts, np.arange(n) * FEATURES.hop_s)
    w = TrackWindower(FEATURES, max_windows=4)
    got, held = [], []
    for chunk in np.split(wave, np.sort(rng.integers(0, len(wave), 60))):
        got += w.push(chunk)
        held.append(w._buf.shape[0])  # samples held between pushes: bounded, not the whole track
    got += w.finish()
    images, _ = _all(got)
    assert np.array_equal(images, ref)  # bit-identical whatever the chunking
    assert max(len(i) for i, _ in got) <= 4
    assert max(held) < 4 * FEATURES.sample_rate + w.block_frames * FEATURES.hop_length


def test_a_one_window_track_equals_the_isolated_window_image():
    t = np.arange(FEATURES.window_samples) / FEATURES.sample_rate
    wave = (0.3 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    images, _ = _all(track_window_images([wave], FEATURES))
    np.testing.assert_allclose(images.astype(np.float32), images_from_frames(wave[None], FEATURES), atol=1e-3)


def test_feature_version_is_in_the_hash_and_stale_configs_are_refused():
    assert FeatureConfig().version == FEATURE_VERSION
    legacy = {k: v for k, v in FeatureConfig().to_dict().items() if k != "version"}
    old = FeatureConfig.from_dict(legacy)  # written before versions existed
    assert old.version == 1 and old.hash() != FeatureConfig().hash()
    with pytest.raises(ValueError, match="re-run `genre-ray prepare`"):
        TrackWindower(old)


def test_prepare_images_equal_label_images_for_the_same_window(library):
    root, _ = library
    path = str(root / "blues/live/b2.flac")  # 44.1 kHz stereo flac: resampled and downmixed on both paths
    rows = list(track_windows({"track_id": "ab" * 8, "path": path, "label_idx": 0, "split": "val"}, FEATURES,
                              noise_copies=0, noise_snr_db=20.0, seed=0))
    labelled = featurize_track(path, FEATURES)
    assert len(rows) == len(labelled.images) == 4 and all(r["error"] == "" for r in rows)
    for r in rows:
        assert r["start_s"] == labelled.starts_s[r["window_idx"]]
        assert np.array_equal(r["image"], labelled.images[r["window_idx"]])
    noisy = list(track_windows({"track_id": "ab" * 8, "path": path, "label_idx": 0, "split": "train"}, FEATURES,
                               noise_copies=1, noise_snr_db=10.0, seed=0))
    assert len(noisy) == 8 and sum(r["augmented"] for r in noisy) == 4
    assert not np.array_equal(noisy[4]["image"], noisy[0]["image"])


@pytest.mark.parametrize("name", sorted(BAD))
def test_each_bad_file_kind_gets_its_status(library, name):
    root, _ = library
    items = list(featurize_stream(root / name, FEATURES, too_short="skip"))
    end = items[-1]
    assert isinstance(end, TrackEnd) and end.status == BAD[name] and end.error
    assert all(isinstance(i, WindowBatch) for i in items[:-1])
    kind = name.split("/")[1].split(".")[0]
    assert {"corrupt": "no decoder", "empty": "empty file (0 bytes)", "not-audio": "no decoder", "silent": "silent",
            "short": "too short"}[kind] in end.error


def test_too_short_padded_with_a_note_and_missing_file(library):
    import logging

    class Collect(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    root, _ = library
    seen: list[str] = []
    handler, log = Collect(), logging.getLogger("genre_ray")
    log.addHandler(handler)
    try:
        t = featurize_track(root / "bad/short.wav", FEATURES, too_short="pad")
    finally:
        log.removeHandler(handler)
    assert t.status == STATUS_OK and len(t.images) == 1 and t.error.startswith("padded")
    assert any("padded" in m for m in seen)  # a warning, not only a note in the row
    missing = featurize_track(root / "nowhere.wav", FEATURES)
    assert missing.status == "error" and "nowhere.wav" in missing.error and missing.images.shape[0] == 0


def test_predict_several_files_table_json_and_plot(library, bundle_dir, tmp_path, capsys):
    root, _ = library
    files = [str(root / "blues/b1.wav"), str(root / "metal/m1.m4a"), str(root / "bad/corrupt.flac")]
    assert main(["predict", *files, "--model", str(bundle_dir), "--plot", str(tmp_path / "p.png")]) == 0  # 2 of 3 ok
    out = capsys.readouterr().out
    assert all(f in out for f in files) and "p_" not in out
    assert out.splitlines()[0].split()[5:] == list(CLASSES)  # the table's header: whole genre names, none cut
    assert (tmp_path / "p.png").stat().st_size > 10_000
    # an output file that is a folder: refused before any work, not a traceback after it
    assert main(["predict", *files, "--model", str(bundle_dir), "--plot", str(tmp_path)]) == 2
    assert f"--plot {tmp_path}: is a folder" in capsys.readouterr().err
    assert main(["predict", *files, "--model", str(bundle_dir), "--json"]) == 0

    def strict(token):  # what a strict parser (JavaScript's JSON.parse) does with NaN / Infinity
        raise ValueError(f"not JSON: {token}")

    rows = [json.loads(x, parse_constant=strict) for x in capsys.readouterr().out.splitlines()]
    assert rows[2]["status"] == "error" and rows[2]["confidence"] is None and rows[2]["p_" + CLASSES[0]] is None
    b = load_bundle(bundle_dir)
    row, probs, starts = predict_file(b.build_model(), files[1], b.features, b.classes)
    assert rows[1]["n_windows"] == row["n_windows"] == len(rows[1]["timeline"]) == len(probs) == 3
    assert rows[1]["genre"] == row["genre"]


def test_write_tags_dry_run_then_write_never_touches_audio(library, tmp_path):
    from mutagen import File as MutagenFile
    from mutagen.flac import FLAC

    from genre_ray.tags import write_genre_tag

    root, _ = library
    flac, mp3 = tmp_path / "b2.flac", tmp_path / "c2.mp3"
    shutil.copy(root / "blues/live/b2.flac", flac)
    shutil.copy(root / "classical/old/deep/c2.mp3", mp3)
    before = {p: (sf.read(p)[0], p.read_bytes()) for p in (flac, mp3)}
    md5 = FLAC(flac).info.md5_signature
    for p in (flac, mp3):
        r = write_genre_tag(p, "reggae", dry_run=True)
        assert r.action == "would-write" and p.read_bytes() == before[p][1]  # dry run: not a byte changed
        assert write_genre_tag(p, "reggae").action == "written"
        assert MutagenFile(p, easy=True)["genre"] == ["reggae"]
        assert np.array_equal(sf.read(p)[0], before[p][0])  # same decoded samples
        assert write_genre_tag(p, "reggae").action == "unchanged"
    assert FLAC(flac).info.md5_signature == md5  # the FLAC audio frames are the same
    text = tmp_path / "x.wav"
    text.write_text("not audio")
    assert write_genre_tag(text, "rock").action == "skipped"


def test_a_tag_write_that_fails_says_failed_not_skipped(library, tmp_path, monkeypatch):
    """An immutable or read-only file (root writes through chmod, so the save is made to fail) read "skipped"."""
    from mutagen.flac import FLAC

    from genre_ray.tags import write_genre_tag

    root, _ = library
    flac = tmp_path / "b2.flac"
    shutil.copy(root / "blues/live/b2.flac", flac)

    def refuse(self, *a, **kw):
        raise PermissionError(1, "Operation not permitted", str(flac))

    monkeypatch.setattr(FLAC, "save", refuse)
    r = write_genre_tag(flac, "rock")
    assert r.action == "failed" and "Operation not permitted" in r.reason
    assert write_genre_tag(flac, "rock", dry_run=True).action == "would-write"  # a dry run saves nothing


def test_object_store_uris_through_fsspec(library):
    """An fsspec URI (here the in-memory filesystem standing in for s3:// or gs://) is listed and decoded."""
    import fsspec

    from genre_ray.pipelines.label import list_inputs

    root, _ = library
    fs = fsspec.filesystem("memory")
    for rel in ("blues/b1.wav", "classical/old/deep/c2.mp3"):
        fs.pipe(f"/lib/{rel}", (root / rel).read_bytes())
    fs.pipe("/lib/notes.txt", b"not audio")
    uris = list_inputs("memory://lib")
    assert uris == ["memory:///lib/blues/b1.wav", "memory:///lib/classical/old/deep/c2.mp3"]
    for uri, rel in zip(uris, ("blues/b1.wav", "classical/old/deep/c2.mp3")):
        np.testing.assert_array_equal(np.concatenate(list(audio.decode_stream(uri))), audio.decode(root / rel))
    assert featurize_track("memory:///lib/missing.wav", FEATURES).status == "error"


def test_retry_errors_takes_the_error_rows_out_of_their_shards(tmp_path):
    """Resume counts every status as labelled; ``retry_errors`` drops the error rows (shards rewritten atomically, an
    all-error shard removed) so those files are labelled again, never leaving two rows for one file."""
    import pyarrow.parquet as pq

    from genre_ray.inference import STATUS_ERROR, label_row
    from genre_ray.pipelines.label import ShardWriter, prepare_output

    probs = np.full((1, len(CLASSES)), 1 / len(CLASSES))
    extra = {"label_key": "k"}
    ok = [label_row(str(tmp_path / f"ok{i}.wav"), 3.0, STATUS_OK, "", probs, CLASSES, "mean", 2, extra) for i in range(2)]
    bad = [label_row(str(tmp_path / f"bad{i}.wav"), 0.0, STATUS_ERROR, "boom", None, CLASSES, "mean", 2, extra)
           for i in range(3)]
    writer = ShardWriter(tmp_path / "out", CLASSES, timeline=False)
    writer.write(ok + bad[:1], [])
    writer.write(bad[1:], [])
    done, errored, _, _ = prepare_output(tmp_path / "out", "k", overwrite=False)
    assert len(done) == 5 and errored == {r["path"] for r in bad}
    done, errored, _, _ = prepare_output(tmp_path / "out", "k", overwrite=False, retry_errors=True)
    assert done == {r["path"] for r in ok} and errored == set()
    shards = sorted((tmp_path / "out" / "labels").glob("*.parquet"))
    assert len(shards) == 1 and pq.read_table(shards[0]).column("path").to_pylist() == [r["path"] for r in ok]
    assert prepare_output(tmp_path / "out", "k", overwrite=False)[:2] == (done, set())
    wiped = prepare_output(tmp_path / "out", "k", overwrite=True)  # a Resume too (the bench's overwrite run failed)
    assert wiped.done == set() and wiped.changed == wiped.removed == 0


def test_write_tags_leaves_uncertain_tracks_alone_unless_asked(library, tmp_path):
    import pandas as pd
    from mutagen import File as MutagenFile

    from genre_ray.pipelines.label import write_tags

    root, _ = library
    sure, unsure = tmp_path / "sure.flac", tmp_path / "unsure.flac"
    shutil.copy(root / "blues/live/b2.flac", sure)
    shutil.copy(root / "blues/live/b2.flac", unsure)
    table = pd.DataFrame({"path": [str(sure), str(unsure)], "genre": ["reggae", "rock"], "status": ["ok", "ok"],
                          "uncertain": [False, True], "uncertain_reason": ["", "low-confidence"]})
    plan = write_tags(table, tmp_path, dry_run=False).set_index("path")
    assert plan.loc[str(sure), "action"] == "written" and plan.loc[str(unsure), "action"] == "skipped"
    assert "uncertain (low-confidence)" in plan.loc[str(unsure), "reason"]
    assert "genre" not in (MutagenFile(unsure, easy=True).tags or {})
    again = write_tags(table, tmp_path, dry_run=False, tag_uncertain=True).set_index("path")
    assert again.loc[str(unsure), "action"] == "written" and MutagenFile(unsure, easy=True)["genre"] == ["rock"]


def test_folder_walk_notes_unreadable_folders_and_files_left_out(tmp_path, monkeypatch):
    """The label job's walk goes on past a folder it cannot read (one locked album stopped the whole run with a
    traceback) and counts what it left out by extension; a training catalog's walk still raises."""
    import genre_ray.catalog as catalog

    (tmp_path / "lib" / "locked").mkdir(parents=True)
    (tmp_path / "lib" / "a.wav").write_bytes(b"")
    (tmp_path / "lib" / "b.WV").write_bytes(b"")
    (tmp_path / "lib" / "cover.jpg").write_bytes(b"")
    (tmp_path / "lib" / ".DS_Store").write_bytes(b"")
    real_walk = os.walk

    def walk(top, **kw):  # as os.walk reports a folder it may not list (chmod 000 does not stop root)
        for dirpath, dirnames, filenames in real_walk(top, **kw):
            if dirpath.endswith("locked"):
                kw["onerror"](PermissionError(13, "Permission denied", dirpath))
                continue
            yield dirpath, dirnames, filenames

    monkeypatch.setattr(catalog.os, "walk", walk)
    notes: dict = {}
    found = catalog.list_audio_files(tmp_path / "lib", notes=notes)
    assert [p.name for p in found] == ["a.wav", "b.WV"]
    assert notes["skipped_ext"] == {".jpg": 1} and len(notes["unreadable"]) == 1
    assert "locked: Permission denied" in notes["unreadable"][0]
    with pytest.raises(PermissionError):
        catalog.list_audio_files(tmp_path / "lib")


def test_names_that_are_not_utf8_are_written_with_escapes():
    from genre_ray.inference import path_text, utf8_row

    name = os.fsdecode(b"/music/caf\xe9 \xff.mp3")
    assert path_text(name) == "/music/caf\\xe9 \\xff.mp3" and path_text("/music/café.mp3") == "/music/café.mp3"
    assert utf8_row({"path": name, "n": 1})["path"].encode("utf-8")


def test_resume_takes_out_only_rows_of_files_known_to_be_gone(tmp_path):
    """A row leaves OUT when its file is gone from the input folder; never for a file of another input, one under a
    folder that is not there (a drive not mounted) or under a folder the walk could not read; a changed file's row
    leaves so it is labelled again."""
    from genre_ray.inference import label_row
    from genre_ray.pipelines.label import ShardWriter, file_stamps, prepare_output

    lib, other = tmp_path / "lib", tmp_path / "other"
    for d in (lib / "locked", other):
        d.mkdir(parents=True)
    files = {n: lib / n for n in ("keep.wav", "changed.wav", "deleted.wav", "now-a-folder.wav")}
    files.update({"locked": lib / "locked" / "x.wav", "other": other / "o.wav"})
    for f in files.values():
        f.write_bytes(b"RIFF")
    unmounted = str(tmp_path / "usb" / "album" / "u.wav")
    probs = np.full((1, len(CLASSES)), 1 / len(CLASSES))
    paths = [str(f) for f in files.values()] + [unmounted]
    rows = [label_row(p, 3.0, STATUS_OK, "", probs, CLASSES, "mean", 2, {"label_key": "k"}) for p in paths]
    ShardWriter(tmp_path / "out", CLASSES, timeline=False, stamps=file_stamps(paths)).write(rows, [])
    files["deleted.wav"].unlink()
    files["now-a-folder.wav"].unlink()
    files["now-a-folder.wav"].mkdir()  # a folder took the file's name: its row goes too
    files["locked"].unlink()  # as a folder the walk could not read would look: its files not listed
    files["changed.wav"].write_bytes(b"RIFF and more")
    listed = {str(files[n]): str(files[n]) for n in ("keep.wav", "changed.wav")}
    got = prepare_output(tmp_path / "out", "k", overwrite=False, listed=listed, scope=str(lib),
                         unreadable=(str(lib / "locked"),))
    assert got.changed == 1 and got.removed == 2
    assert got.done == {str(files["keep.wav"]), str(files["locked"]), str(files["other"]), unmounted}


def test_tag_writes_restamp_their_rows(library, tmp_path):
    """Writing a genre tag changes the file's size and time: its row is restamped, so the next run does not label
    every tagged file again."""
    import pandas as pd

    from genre_ray.inference import label_row
    from genre_ray.pipelines.label import ShardWriter, file_stamps, prepare_output, read_labels, write_tags

    root, _ = library
    flac = tmp_path / "b2.flac"
    shutil.copy(root / "blues/live/b2.flac", flac)
    probs = np.eye(len(CLASSES))[[0]]
    row = label_row(str(flac), 5.5, STATUS_OK, "", probs, CLASSES, "mean", 2, {"label_key": "k"})
    ShardWriter(tmp_path / "out", CLASSES, timeline=False, stamps=file_stamps([str(flac)])).write([row], [])
    before = read_labels(tmp_path / "out")["file_stamp"].item()
    tags = write_tags(read_labels(tmp_path / "out"), tmp_path / "out", dry_run=False)
    assert tags["action"].tolist() == ["written"]
    assert read_labels(tmp_path / "out")["file_stamp"].item() != before
    got = prepare_output(tmp_path / "out", "k", overwrite=False, listed={str(flac): str(flac)})
    assert got.changed == 0 and got.done == {str(flac)}
    write_tags(read_labels(tmp_path / "out"), tmp_path / "out", dry_run=True)  # unchanged now: not listed again
    log = pd.read_csv(tmp_path / "out" / "tags.csv")
    assert log["action"].tolist() == ["written"] and log["previous"].isna().all()


def test_a_wav_whose_sizes_do_not_add_up_is_not_tagged(tmp_path):
    """A cut-off or still-streaming WAV declares more audio than it holds: an ID3 chunk appended to it would sit
    inside the declared data, and decoders would play the tag's bytes (an audible click). Skipped, untouched."""
    from genre_ray.tags import iff_mismatch, write_genre_tag

    y = (0.3 * np.sin(np.arange(22_050 * 2) / 10)).astype(np.float32)
    sf.write(tmp_path / "ok.wav", y, 22_050, subtype="PCM_16")
    full = (tmp_path / "ok.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(full[: len(full) // 2])
    streaming = bytearray(full)
    streaming[4:8] = streaming[full.index(b"data") + 4:full.index(b"data") + 8] = b"\xff\xff\xff\xff"
    (tmp_path / "streaming.wav").write_bytes(bytes(streaming))
    assert iff_mismatch(tmp_path / "ok.wav") == ""
    for name in ("cut.wav", "streaming.wav"):
        before = (tmp_path / name).read_bytes()
        for dry in (True, False):
            r = write_genre_tag(tmp_path / name, "jazz", dry_run=dry)
            assert r.action == "skipped" and "not tagged: its header declares" in r.reason, r
        assert (tmp_path / name).read_bytes() == before
    assert write_genre_tag(tmp_path / "ok.wav", "jazz").action == "written"
    assert iff_mismatch(tmp_path / "ok.wav") == ""  # the tagged file still adds up
    np.testing.assert_array_equal(sf.read(tmp_path / "ok.wav", dtype="int16")[0],
                                  sf.read(io.BytesIO(full), dtype="int16")[0])


@pytest.mark.parametrize("seconds,status", [(0.0005, "too-short"), (0.15, "too-short"), (0.25, "ok"), (1.9, "ok")])
def test_only_a_track_with_a_share_of_a_window_is_padded(tmp_path, seconds, status):
    """A padded window needs a tenth of a window of audio (0.2 s of these 2-s windows): the first kilobyte of a
    cut-off download (milliseconds) is too short, not a confident label made from an image of near silence. The
    device path's segment rows follow the same rule."""
    from genre_ray.pipelines.label_device import segment_batch

    path = tmp_path / "clip.wav"
    sf.write(path, 0.3 * np.sin(np.arange(max(1, int(seconds * 22_050))) * 0.05).astype(np.float32), 22_050)
    t = featurize_track(path, FEATURES, too_short="pad")
    assert t.status == status and len(t.images) == (status == "ok")
    if status == "too-short":
        assert "than the 0.20 s a padded window needs" in t.error
    rows = list(segment_batch({"path": np.array([str(path)], object)}, FEATURES, FEATURES.hop_s, "pad"))
    assert rows[-1]["status"][-1] == status


def test_a_glob_through_a_bracketed_folder_says_how_to_write_it(tmp_path):
    """Album folders are often named "[2001] Album": in a glob the brackets are a character class, so nothing
    matches — the message says how to write the folder literally, and that spelling finds the files."""
    import glob as globmod

    from genre_ray.pipelines.label import list_inputs

    folder = tmp_path / "[2001] Album"
    folder.mkdir()
    sf.write(folder / "a.wav", np.zeros(2205, np.float32) + 0.1, 22_050)
    with pytest.raises(ValueError, match=r"for a folder named with brackets write .*\[\[\]2001\] Album/\*\.wav"):
        list_inputs(str(folder / "*.wav"))
    assert list_inputs(globmod.escape(str(folder)) + "/*.wav") == [str(folder / "a.wav")]


def test_a_rerun_rewrites_exports_an_earlier_run_left(tmp_path, capsys):
    """A rerun without --export must not leave the first run's labels.csv behind, describing other labels."""
    import pandas as pd

    from genre_ray.pipelines.label import write_exports

    def table(genres):
        return pd.DataFrame({"path": [f"/m/{i}.wav" for i in range(len(genres))], "genre": genres,
                             "top_k_genres": [[g] for g in genres], "top_k_probs": [[0.9] for _ in genres]})

    assert write_exports(table(["rock"]), tmp_path, ["csv"]) == [tmp_path / "labels.csv"]
    assert not (tmp_path / "labels.jsonl").exists()
    assert write_exports(table(["jazz", "pop"]), tmp_path, []) == [tmp_path / "labels.csv"]  # not asked: rewritten
    assert pd.read_csv(tmp_path / "labels.csv")["genre"].tolist() == ["jazz", "pop"]
    assert "labels.csv (written by an earlier run) rewritten" in capsys.readouterr().out
    assert write_exports(table(["blues"]), tmp_path, ["jsonl"]) == [tmp_path / "labels.jsonl", tmp_path / "labels.csv"]
    assert pd.read_json(tmp_path / "labels.jsonl", lines=True)["genre"].tolist() == ["blues"]
    assert write_exports(table(["blues"]), tmp_path / "empty", []) == []


def test_a_model_folder_is_a_bundle_or_holds_exactly_one(tmp_path, capsys):
    """`--model FOLDER` searched every folder below and took the first bundle by name, silently: `--model /tmp`
    labelled with somebody else's model."""
    from genre_ray.bench import demo_bundle
    from genre_ray.bundle import SEARCH_DEPTH, find_bundle

    one = demo_bundle(tmp_path / "runs" / "a" / "bundle")
    assert find_bundle(one) == one and capsys.readouterr().err == ""
    assert find_bundle(tmp_path / "runs" / "a", "runs/a") == one  # a training run's --out: its bundle/
    assert f"runs/a: using the bundle in {one}" in capsys.readouterr().err
    demo_bundle(tmp_path / "runs" / "b" / "bundle")
    with pytest.raises(FileNotFoundError, match=r"2 model bundles below it .*runs/a/bundle, .*runs/b/bundle"):
        load_bundle(str(tmp_path / "runs"))
    deep = tmp_path / "deep" / "1" / "2" / "3"
    demo_bundle(deep / "bundle")
    assert len(deep.relative_to(tmp_path / "deep").parts) + 1 > SEARCH_DEPTH
    with pytest.raises(FileNotFoundError, match="no bundle.json in it or up to 3 folders below"):
        load_bundle(str(tmp_path / "deep"))


def test_jsonl_export_keeps_slashes_and_backslashes(tmp_path):
    """pandas writes `/` as `\\/`: `grep /music/` found nothing in labels.jsonl. Unescaped — and a name with a real
    backslash before a slash still reads back as it was."""
    import pandas as pd

    from genre_ray.pipelines.label import EXPORTERS

    paths = ["/music/a b/é.flac", "/music/odd\\/name.mp3", "/m/x\\\\/y.wav"]
    df = pd.DataFrame({"path": paths, "genre": ["rock", "jazz", "pop"], "top_k_genres": [["rock"], ["jazz"], ["pop"]],
                       "top_k_probs": [[0.9], [0.8], [0.7]]})
    out = EXPORTERS["jsonl"](df, tmp_path, rows_per_chunk=2)  # two chunks: the lines join up
    text = out.read_text(encoding="utf-8")
    assert "\\/" not in text.replace("\\\\/", "") and '"path":"/music/a b/é.flac"' in text
    back = pd.read_json(out, lines=True)
    assert back["path"].tolist() == paths and back["top_k_genres"].tolist() == [["rock"], ["jazz"], ["pop"]]
    assert text.endswith("\n") and text.count("\n") == 3


@pytest.mark.parametrize("source_sr,flagged", [(8_000, True), (16_000, True), (22_050, False), (44_100, False)])
def test_a_low_sample_rate_is_noted_and_flags_the_track_uncertain(tmp_path, source_sr, flagged):
    """An 8-kHz recording was labelled with full confidence though its spectrogram is empty above 4 kHz: a
    `low-sample-rate` note and uncertain reason now say so — on both featurize paths, and in predict's row."""
    from genre_ray.inference import label_row, low_sample_rate_note
    from genre_ray.pipelines.label_device import segment_stream

    t = np.arange(int(source_sr * 4.0)) / source_sr
    path = tmp_path / f"{source_sr}.wav"
    sf.write(path, (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), source_sr)
    info: dict = {}
    assert sum(len(b) for b in audio.decode_stream(path, FEATURES.sample_rate, info=info)) > 0
    assert info["sample_rate"] == source_sr
    end = list(featurize_stream(path, FEATURES))[-1]
    device_end = list(segment_stream(str(path), FEATURES, None, "pad"))[-1]
    assert end.status == STATUS_OK and device_end["status"] == STATUS_OK
    assert ("low-sample-rate: recorded at" in end.error) == flagged and device_end["error"] == end.error
    assert end.error == low_sample_rate_note(source_sr, FEATURES)
    probs = np.tile(np.eye(len(CLASSES), dtype=np.float32)[0], (3, 1))  # three windows, all sure: confident
    row = label_row(str(path), 4.0, STATUS_OK, end.error, probs, CLASSES, "mean", 2, {})
    assert row["uncertain"] == flagged and row["uncertain_reason"] == ("low-sample-rate" if flagged else "")
    # a filterbank that stops below the file's Nyquist frequency sees nothing missing
    assert low_sample_rate_note(16_000, FeatureConfig(f_max=7_000.0)) == ""
