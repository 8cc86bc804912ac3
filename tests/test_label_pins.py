"""Pins for the pure helpers of genre_ray/pipelines/label.py: resume (prepare_output), the actor plan, the input blocks."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from genre_ray.config import ConfigError, LabelConfig
from genre_ray.inference import STATUS_OK, label_row
from genre_ray.pipelines.label import ShardWriter, actor_plan, file_stamps, input_blocks, prepare_output
from label_lib import CLASSES

PROBS = np.full((1, len(CLASSES)), 1 / len(CLASSES))


def _rows(paths, key="k"):
    return [label_row(p, 3.0, STATUS_OK, "", PROBS, CLASSES, "mean", 2, {"label_key": key}) for p in paths]


def _timeline(paths, key="k"):
    return [{"path": p, "window": 0, "start_s": 0.0, "end_s": 2.0, **{f"p_{c}": 0.25 for c in CLASSES},
             "label_key": key} for p in paths]


def test_labels_of_another_model_or_setting_stop_the_run(tmp_path):
    ShardWriter(tmp_path / "out", CLASSES, timeline=False).write(_rows([str(tmp_path / "a.wav")], key="old"), [])
    with pytest.raises(ConfigError, match="another model, feature or window setting"):
        prepare_output(tmp_path / "out", "new", overwrite=False)


def test_overwrite_removes_timeline_shards_too(tmp_path):
    w = ShardWriter(tmp_path / "out", CLASSES, timeline=True)
    w.write(_rows([str(tmp_path / "a.wav")]), _timeline([str(tmp_path / "a.wav")]))
    assert list((tmp_path / "out" / "timeline").glob("*.parquet"))
    prepare_output(tmp_path / "out", "k2", overwrite=True)
    assert not list((tmp_path / "out" / "timeline").glob("*.parquet"))
    assert not list((tmp_path / "out" / "labels").glob("*.parquet"))


def test_a_timeline_shard_without_its_labels_shard_is_removed_on_resume(tmp_path):
    """A run killed between the timeline shard and its labels shard (the commit mark) leaves windows of tracks the
    next run labels again: they must go, or the timeline holds them twice."""
    w = ShardWriter(tmp_path / "out", CLASSES, timeline=True)
    w.write(_rows([str(tmp_path / "a.wav")]), _timeline([str(tmp_path / "a.wav")]))
    orphan = tmp_path / "out" / "timeline" / "part-killed-00000.parquet"
    pq.write_table(pa.Table.from_pylist(_timeline([str(tmp_path / "b.wav")]), schema=w.tl_schema), orphan)
    prepare_output(tmp_path / "out", "k", overwrite=False)
    assert not orphan.exists() and len(list((tmp_path / "out" / "timeline").glob("*.parquet"))) == 1


def test_rows_under_a_missing_subfolder_of_the_input_are_kept(tmp_path):
    """A library whose sub-folder is a mount point that is not mounted: its rows are not "gone"."""
    lib = tmp_path / "lib"
    (lib / "here").mkdir(parents=True)
    kept = str(lib / "usb" / "album" / "u.wav")  # lib/usb does not exist
    gone = lib / "here" / "g.wav"
    gone.write_bytes(b"RIFF")
    ShardWriter(tmp_path / "out", CLASSES, timeline=False, stamps=file_stamps([kept, str(gone)])).write(
        _rows([kept, str(gone)]), [])
    gone.unlink()
    got = prepare_output(tmp_path / "out", "k", overwrite=False, listed={}, scope=str(lib))
    assert got.removed == 1 and got.done == {kept}


def test_rows_of_a_sibling_folder_with_the_same_prefix_are_not_in_scope(tmp_path):
    lib, lib2 = tmp_path / "lib", tmp_path / "lib2"
    lib.mkdir()
    lib2.mkdir()
    other = lib2 / "x.wav"  # another input labelled into the same OUT, deleted since
    other.write_bytes(b"RIFF")
    ShardWriter(tmp_path / "out", CLASSES, timeline=False, stamps=file_stamps([str(other)])).write(
        _rows([str(other)]), [])
    other.unlink()
    got = prepare_output(tmp_path / "out", "k", overwrite=False, listed={}, scope=str(lib))
    assert got.removed == 0 and got.done == {str(other)}


def test_a_listed_file_that_cannot_be_stated_now_keeps_its_row(tmp_path):
    f = tmp_path / "a.wav"
    f.write_bytes(b"RIFF")
    ShardWriter(tmp_path / "out", CLASSES, timeline=False, stamps=file_stamps([str(f)])).write(_rows([str(f)]), [])
    f.unlink()  # listed by the walk, gone (or unreadable) by the time it is stat'ed: not known to have changed
    got = prepare_output(tmp_path / "out", "k", overwrite=False, listed={str(f): str(f)}, scope=str(tmp_path))
    assert got.changed == 0 and got.done == {str(f)}


@pytest.mark.parametrize("cpus,gpus,expect", [(8, 2, (4, 1.0)), (4, 1, (2, 1.0)), (7, 2, (2, 1.0))])
def test_two_actors_per_gpu_when_their_cpus_are_exactly_half_the_clusters(cpus, gpus, expect):
    cfg = LabelConfig(input="x", model="m", out="o")
    assert actor_plan(cfg, cpus, gpus, True, "device") == expect


@pytest.mark.parametrize("files,cpus,per_block,expect", [
    (10, 2, 16, 8),      # at least 4 blocks per CPU, so the tasks balance
    (3, 8, 16, 3),       # never more blocks than files (no empty blocks)
    (1000, 2, 16, 63),   # at most files_per_block files a block
    (0, 4, 16, 1),
])
def test_input_blocks(files, cpus, per_block, expect):
    assert input_blocks(files, cpus, per_block) == expect


def _batch(rows):
    out = {k: np.array([r.get(k, d) for r in rows], dtype=object)
           for k, d in (("path", ""), ("kind", ""), ("status", ""), ("error", ""))}
    out.update({k: np.array([r.get(k, d) for r in rows]) for k, d in
                (("window", -1), ("start_s", 0.0), ("duration_s", 0.0), ("n_windows", 0))})
    out["probs"] = np.stack([r.get("probs", np.full(len(CLASSES), np.nan)) for r in rows]).astype(np.float32)
    return out


def test_a_track_finishes_when_its_end_row_and_exactly_its_windows_have_arrived_in_any_order():
    from genre_ray.pipelines.label import END, WINDOW, TrackAssembler

    asm = TrackAssembler(CLASSES, "mean", 2, 2.0, {"label_key": "k", "model_name": "m", "model_uri": "u",
                                                  "model_version": "", "model_id": "i", "feature_hash": "f"})
    p = [np.eye(len(CLASSES))[i % len(CLASSES)] for i in range(3)]
    w = lambda i: {"path": "/a.wav", "kind": WINDOW, "window": i, "start_s": float(i), "probs": p[i]}
    end = {"path": "/a.wav", "kind": END, "duration_s": 4.0, "n_windows": 3, "status": STATUS_OK, "error": ""}
    assert list(asm.add(_batch([w(2), end]))) == []
    assert list(asm.add(_batch([w(0)]))) == []
    (row, timeline), = list(asm.add(_batch([w(1)])))
    assert row["path"] == "/a.wav" and row["status"] == STATUS_OK and asm.pending == 0
    assert [t["window"] for t in timeline] == [0, 1, 2]  # window order, not arrival order
    assert [t["start_s"] for t in timeline] == [0.0, 1.0, 2.0] and timeline[0]["end_s"] == 2.0
    assert timeline[2][f"p_{CLASSES[2]}"] == 1.0


def test_the_tag_log_keeps_every_runs_record_and_moves_an_old_layout_aside(tmp_path):
    import pandas as pd

    from genre_ray.pipelines.label import _append_tag_log

    log = tmp_path / "tags.csv"
    log.write_text("path,genre,previous,action\n/x.wav,rock,,written\n")  # an older layout: no `when` column
    cols = ["when", "dry_run", "path", "genre", "previous", "action", "reason"]
    first = pd.DataFrame([["t1", False, "/a.wav", "rock", "jazz", "written", ""]], columns=cols)
    second = pd.DataFrame([["t2", True, "/a.wav", "blues", "rock", "would-write", ""]], columns=cols)
    _append_tag_log(log, first)
    _append_tag_log(log, second)
    got = pd.read_csv(log, keep_default_na=False)
    assert list(got["when"]) == ["t1", "t2"] and list(got["previous"]) == ["jazz", "rock"]  # the user's own genre kept
    assert (tmp_path / "tags.before.csv").read_text().startswith("path,genre,previous,action")


def test_restamp_keeps_the_old_stamp_of_a_file_it_cannot_stat(tmp_path):
    from genre_ray.pipelines.label import restamp

    f = tmp_path / "a.wav"
    f.write_bytes(b"RIFF")
    stamps = file_stamps([str(f)])
    ShardWriter(tmp_path / "out", CLASSES, timeline=False, stamps=stamps).write(_rows([str(f)]), [])
    f.unlink()
    assert restamp(tmp_path / "out", {str(f): str(f)}) == 1
    shard, = (tmp_path / "out" / "labels").glob("*.parquet")
    assert pq.read_table(shard).column("file_stamp").to_pylist() == [stamps[str(f)]]


def test_temporaries_of_a_killed_run_are_removed_on_resume(tmp_path):
    w = ShardWriter(tmp_path / "out", CLASSES, timeline=True)
    w.write(_rows([str(tmp_path / "a.wav")]), _timeline([str(tmp_path / "a.wav")]))
    leftovers = [tmp_path / "out" / d / f".part-x-00001.parquet.{n}.tmp" for d, n in (("labels", 1), ("timeline", 2))]
    for f in leftovers:
        f.write_bytes(b"half a shard")
    prepare_output(tmp_path / "out", "k", overwrite=False)
    assert not any(f.exists() for f in leftovers)


def test_object_store_files_are_never_tagged(tmp_path):
    import pandas as pd

    from genre_ray.pipelines.label import write_tags

    table = pd.DataFrame({"path": ["s3://bucket/a.flac"], "genre": ["rock"], "status": [STATUS_OK],
                          "uncertain": [False], "uncertain_reason": [""]})
    df = write_tags(table, tmp_path, dry_run=False)
    assert list(df["action"]) == ["skipped"] and df["reason"].iloc[0] == "object-store files are not tagged"
