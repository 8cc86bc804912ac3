"""Pins for genre_ray/pipelines/label_device.py: how segment rows are grouped into batches."""

from __future__ import annotations

import numpy as np

from genre_ray.pipelines.label_device import SEGMENT, segment_batch
from label_lib import FEATURES


def test_a_batch_closes_once_its_segments_reach_group_bytes_counted_over_the_batch(tmp_path):
    import soundfile as sf

    path = str(tmp_path / "t.wav")
    sf.write(path, (0.1 * np.random.default_rng(0).standard_normal(22_050 * 40)).astype(np.float32), 22_050)
    args = ({"path": np.array([path], object)}, FEATURES, 0.5, "pad")  # segments of 32, 32 and 11 windows
    single = list(segment_batch(*args, group_bytes=0))
    sizes = [len(b["samples"][0]) for b in single if b["kind"][0] == SEGMENT]
    assert len(sizes) == 3
    # exactly the first segment's bytes: the batch closes right after it (size >= group_bytes)
    first = list(segment_batch(*args, group_bytes=sizes[0]))
    assert list(first[0]["kind"]) == [SEGMENT]
    # more than any one segment: bytes add up over the batch, so it closes after the second segment
    summed = list(segment_batch(*args, group_bytes=max(sizes) + 1))
    assert list(summed[0]["kind"]) == [SEGMENT, SEGMENT] and len(summed) == 2


def test_arrow_rows_reads_large_binary_and_sliced_columns_without_mixing_rows():
    import pyarrow as pa

    from genre_ray.pipelines.label_device import arrow_rows, ragged

    cells = [np.arange(n, dtype=np.float32) + 10 * n for n in (3, 5, 2)]
    for typ in (pa.binary(), pa.large_binary()):
        t = pa.table({"kind": [SEGMENT] * 3, "samples": pa.array([c.tobytes() for c in cells], typ)})
        for table, want in ((t, cells), (t.slice(1, 2), cells[1:])):
            rows = arrow_rows(table)
            got = [ragged(rows, "samples", i) for i in range(len(want))]
            for g, w in zip(got, want):
                np.testing.assert_array_equal(g, w)


def test_a_decoder_that_fails_after_some_segments_announces_the_windows_already_sent(tmp_path, monkeypatch):
    """The end row's n_windows tells the driver how many window rows to wait for before finishing the track: the
    segments yielded before the failure are already on their way."""
    from genre_ray.pipelines import label_device

    sr = FEATURES.sample_rate

    def dies(path, rate, block_s=10.0, **kw):
        rng = np.random.default_rng(0)
        for _ in range(4):
            yield (0.1 * rng.standard_normal(int(10 * sr))).astype(np.float32)
        raise RuntimeError("device went away")

    monkeypatch.setattr(label_device.audio, "decode_stream", dies)
    rows = list(label_device.segment_stream("x.wav", FEATURES, 1.0, "pad", max_windows=8))
    sent = sum(len(r["offsets"]) for r in rows if r["kind"] == SEGMENT)
    assert sent > 0 and rows[-1]["kind"] == "end" and rows[-1]["status"] == "error"
    assert rows[-1]["n_windows"] == sent and "device went away" in rows[-1]["error"]
