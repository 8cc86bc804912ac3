"""``genre-ray report``: one self-contained HTML page for a labelled library — no Ray, no network.

Reads the label job's output folder (``OUT/labels/*.parquet``, and ``OUT/timeline/*.parquet`` when label ran
with ``--timeline``) with pyarrow and writes one HTML file with everything inlined (hand-written JS and CSS,
data as columnar JSON; nothing is fetched):

- the genre distribution (inline SVG bar chart; a click filters the table by that genre) and the count of
  each status (``ok``, ``error``, ``too-short``; a click filters by status);
- a table of tracks — genre, confidence, uncertain (when the labels have an ``uncertain`` column), duration,
  status, note/error, path — sortable (click a header), filterable (genre, status, uncertain only, text in the
  path) and paginated, so 100,000 rows stay usable;
- a chosen track's per-window timeline (click a row): a genres × windows heat map of the window
  probabilities, drawn as inline SVG.

Data size is bounded: paths are stored as (folder index, file name); confidences as integers (‰); timelines
as base64 uint8 probabilities up to ``timeline_budget`` bytes — beyond it only each window's top genre and
its probability, and beyond that the timelines of the first tracks only (the page says so).

Pure functions: :func:`read_labels_dir` → :func:`report_payload` → :func:`render_html`; :func:`write_report`
writes the file atomically (temp file + rename).
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

LABELS, TIMELINE = "labels", "timeline"
"""Sub-folders of the label job's output (the same names as ``genre_ray.pipelines.label``)."""
REPORT_FILE = "report.html"
OK = "ok"
"""The labels' ``status`` of a classified file (``genre_ray.inference.STATUS_OK``)."""
TIMELINE_BUDGET = 6_000_000
"""Default bytes of timeline data embedded (before base64, which adds a third)."""
LABEL_COLUMNS = ("path", "genre", "confidence", "duration_s", "n_windows", "status", "error", "uncertain",
                 "vote_entropy")
"""Columns of the labels table the report reads (others, e.g. embeddings, are never loaded)."""


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------


def _shards(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.parquet")) if folder.is_dir() else []


def _read_shards(shards: list[Path], wanted: list[str] | None) -> pd.DataFrame:
    """Concatenate shards, reading only the ``wanted`` columns each has (None = all); missing ones become NaN."""
    frames = []
    for s in shards:
        names = pq.read_schema(s).names
        cols = names if wanted is None else [c for c in wanted if c in names]
        frames.append(pq.read_table(s, columns=cols).to_pandas())
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def read_labels_dir(out: str | Path) -> tuple[pd.DataFrame, pd.DataFrame | None, list[str]]:
    """The label job's output folder → ``(labels, timeline or None, classes)``.

    ``out`` may be the job's ``OUT`` or its ``OUT/labels``. ``labels`` has the :data:`LABEL_COLUMNS` the shards
    hold (sorted by path; a path labelled twice keeps its last row); ``classes`` are the ``p_<class>`` columns
    in model order (plus any other genre that occurs). Raises ``FileNotFoundError`` when there are no shards.
    """
    root = Path(out)
    if root.name == LABELS and not (root / LABELS).is_dir():
        root = root.parent
    shards = _shards(root / LABELS)
    if not shards:
        raise FileNotFoundError(f"{root}: no labels (expected {root / LABELS}/*.parquet written by genre-ray label)")
    names: list[str] = []
    for s in shards:
        names += [n for n in pq.read_schema(s).names if n not in names]
    classes = [n[2:] for n in names if n.startswith("p_")]
    labels = _read_shards(shards, list(LABEL_COLUMNS))
    labels = labels.drop_duplicates("path", keep="last").sort_values("path", ignore_index=True)
    classes += sorted(set(labels["genre"].dropna().astype(str)) - set(classes)) if "genre" in labels else []
    tl_shards = _shards(root / TIMELINE)
    timeline = None
    if tl_shards:
        timeline = _read_shards(tl_shards, ["path", "window", "start_s", "end_s", *[f"p_{c}" for c in classes]])
    return labels, timeline, classes


# ---------------------------------------------------------------------------------------------
# payload: compact columnar data for the page
# ---------------------------------------------------------------------------------------------


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")


def _split_paths(paths: pd.Series) -> tuple[list[str], list[int], list[str]]:
    """Paths → (folders with trailing separator, folder index per path, file names): albums share a folder."""
    text = paths.astype(str)
    cut = text.str.rfind("/").clip(lower=-1) + 1
    folders = [t[:c] for t, c in zip(text, cut)]
    names = [t[c:] for t, c in zip(text, cut)]
    uniq, idx = np.unique(np.asarray(folders, dtype=object).astype(str), return_inverse=True)
    return [str(u) for u in uniq], idx.astype(int).tolist(), names


def _codes(values: pd.Series, vocab: list[str]) -> list[int]:
    lookup = {v: i for i, v in enumerate(vocab)}
    return [lookup.get(v, -1) if isinstance(v, str) else -1 for v in values]


def _timeline_payload(labels: pd.DataFrame, timeline: pd.DataFrame | None, classes: list[str],
                      budget: int) -> dict[str, Any]:
    """Per-window data of the tracks in ``labels`` order: ``full`` (all class probabilities, uint8) when it fits
    in ``budget`` bytes, else ``top1`` (top genre + its probability per window), for as many tracks as fit."""
    if timeline is None or timeline.empty:
        return {"mode": "none"}
    import pyarrow.compute as pc

    # window → row of its track in ``labels`` (Arrow's hash join: fast at millions of windows), then sorted by
    # (row, window) with a window listed twice kept once (its last copy)
    found = pc.index_in(pa.array(timeline["path"], pa.string()), value_set=pa.array(labels["path"], pa.string()))
    rows_all = found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    win_all = timeline["window"].to_numpy(np.int64)
    order = np.lexsort((win_all, rows_all))
    order = order[rows_all[order] >= 0]
    if order.size == 0:
        return {"mode": "none"}
    r, w = rows_all[order], win_all[order]
    last = np.r_[(r[1:] != r[:-1]) | (w[1:] != w[:-1]), True]
    order = order[last]
    tl = timeline.iloc[order]
    tl_rows = rows_all[order]
    probs = np.nan_to_num(tl[[f"p_{c}" for c in classes]].to_numpy(np.float32), nan=0.0)
    n_windows, n_classes = probs.shape
    mode = "full" if n_windows * (n_classes + 4) <= budget else "top1"
    per_window = (n_classes if mode == "full" else 2) + 4
    track_rows, counts = np.unique(tl_rows, return_counts=True)
    keep_tracks = len(track_rows)
    if n_windows * per_window > budget:  # only the first tracks' timelines fit
        ends = np.cumsum(counts) * per_window
        keep_tracks = int(np.searchsorted(ends, budget, side="right"))
    n_keep = int(counts[:keep_tracks].sum())
    probs = probs[:n_keep]
    start_cs = np.round(tl["start_s"].to_numpy()[:n_keep] * 100).astype("<u4")  # centiseconds
    q = np.clip(np.rint(probs * 255), 0, 255).astype(np.uint8)
    if mode == "top1":
        top = probs.argmax(axis=1) if n_keep else np.zeros(0, int)
        q = np.stack([top.astype(np.uint8), q[np.arange(n_keep), top]], axis=1) if n_keep else q[:, :2]
    window_s = float(np.median((tl["end_s"] - tl["start_s"]).to_numpy())) if len(tl) else 0.0
    return {"mode": mode, "rows": track_rows[:keep_tracks].astype(int).tolist(),
            "off": np.concatenate([[0], np.cumsum(counts[:keep_tracks])]).astype(int).tolist(),
            "start_cs": _b64(start_cs), "probs": _b64(q), "window_s": round(window_s, 3),
            "tracks_total": int(len(track_rows)), "tracks_embedded": keep_tracks}


def report_payload(labels: pd.DataFrame, timeline: pd.DataFrame | None, classes: list[str], *, title: str,
                   source: str = "", timeline_budget: int = TIMELINE_BUDGET) -> dict[str, Any]:
    """The page's data: columnar lists (row ``i`` of every list is track ``i``, in ``labels`` order).

    ``genre``/``status`` are indices into ``genres``/``statuses`` (−1 = none); ``conf`` is the confidence in ‰
    (−1 = none); ``unc`` is 1/0/−1 (uncertain / certain / unknown) or ``None`` when the labels have no
    ``uncertain`` column; ``dur`` seconds (0.1 s); paths are ``dirs[dir[i]] + name[i]``; ``note`` maps a row to
    its error or note (only rows that have one).
    """
    n = len(labels)

    def col(name: str, default: Any) -> pd.Series:
        return labels[name] if name in labels.columns else pd.Series([default] * n, index=labels.index)

    statuses = sorted(set(col("status", OK).fillna("unknown").astype(str)), key=lambda s: (s != OK, s))
    dirs, dir_idx, names = _split_paths(col("path", ""))
    conf = pd.to_numeric(col("confidence", np.nan), errors="coerce").to_numpy(np.float64)
    dur = pd.to_numeric(col("duration_s", np.nan), errors="coerce").to_numpy(np.float64)
    unc = None
    if "uncertain" in labels.columns:
        unc = [-1 if pd.isna(v) else int(bool(v)) for v in labels["uncertain"].astype(object)]
    notes = col("error", "").fillna("").astype(str)
    note_list = notes.tolist()
    note_rows = [i for i, t in enumerate(note_list) if t]
    genre_codes = _codes(col("genre", None), classes)
    status_codes = _codes(col("status", OK).fillna("unknown").astype(str), statuses)
    ok = np.asarray(status_codes) == statuses.index(OK) if OK in statuses else np.zeros(n, bool)
    counts = np.bincount([g for g, o in zip(genre_codes, ok) if o and g >= 0], minlength=len(classes))
    return {
        "title": title, "source": source, "n": n,
        "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "genres": classes, "genre_counts": counts.astype(int).tolist(), "statuses": statuses,
        "status_counts": np.bincount(status_codes, minlength=len(statuses)).astype(int).tolist() if n else [],
        "dirs": dirs,
        "col": {"dir": dir_idx, "name": names, "genre": genre_codes, "status": status_codes,
                "conf": np.where(np.isfinite(conf), np.rint(conf * 1000), -1).astype(int).tolist(),
                "dur": np.where(np.isfinite(dur), np.round(dur, 1), -1).tolist(), "unc": unc},
        "note": {str(i): note_list[i][:500] for i in note_rows},
        "timeline": _timeline_payload(labels, timeline, classes, timeline_budget),
    }


# ---------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------


def _json_for_script(payload: dict[str, Any]) -> str:
    """JSON safe inside ``<script type="application/json">``: no ``<``, ``>`` or ``&`` characters at all."""
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_html(payload: dict[str, Any]) -> str:
    """The self-contained page (no external resource of any kind) for :func:`report_payload`'s data."""
    return (_PAGE.replace("__TITLE__", html.escape(payload["title"]))
            .replace("__CSS__", _CSS).replace("__JS__", _JS).replace("__DATA__", _json_for_script(payload)))


def build_report(out: str | Path, title: str | None = None, timeline_budget: int = TIMELINE_BUDGET) -> str:
    """The HTML report of the label job's output folder ``out`` (see :func:`read_labels_dir`)."""
    labels, timeline, classes = read_labels_dir(out)
    root = Path(out)
    name = title or f"genre-ray library report — {root.resolve().name}"
    return render_html(report_payload(labels, timeline, classes, title=name, source=str(root.resolve()),
                                      timeline_budget=timeline_budget))


def write_report(out: str | Path, dest: str | Path | None = None, title: str | None = None,
                 timeline_budget: int = TIMELINE_BUDGET) -> Path:
    """Write :func:`build_report` to ``dest`` (default ``OUT/report.html``) atomically; returns the path."""
    dest = Path(dest) if dest is not None else Path(out) / REPORT_FILE
    text = build_report(out, title, timeline_budget)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>__TITLE__</title>
<style>__CSS__</style>
</head>
<body>
<header><h1>__TITLE__</h1><div id="meta"></div></header>
<section id="overview">
  <div class="card"><h2>Genres <small>(ok tracks; click a bar to filter)</small></h2><div id="chart"></div></div>
  <div class="card"><h2>Status <small>(click to filter)</small></h2><div id="statuses"></div></div>
</section>
<section class="card" id="tracks">
  <div id="controls">
    <label>genre <select id="genre-filter"><option value="-1">all genres</option></select></label>
    <label>status <select id="status-filter"><option value="-1">all statuses</option></select></label>
    <label id="unc-label"><input type="checkbox" id="uncertain-only"> uncertain only</label>
    <label>path <input type="search" id="search" placeholder="text in the path" size="28"></label>
    <label>rows <select id="page-size"><option>25</option><option selected>100</option><option>500</option></select></label>
    <span id="count" data-count="0"></span>
  </div>
  <p id="hint"><small>Click a track for its per-window timeline.</small></p>
  <table id="table"><thead><tr id="head"></tr></thead><tbody id="rows"></tbody></table>
  <div id="pager"><button id="prev">&lsaquo; prev</button> <span id="page-info"></span>
    <button id="next">next &rsaquo;</button></div>
</section>
<script type="application/json" id="report-data">__DATA__</script>
<script>__JS__</script>
</body>
</html>
"""

_CSS = """
:root{--fg:#1d2330;--mut:#667085;--bg:#f6f7f9;--card:#fff;--line:#e4e7ec;--acc:#2f6fde}
*{box-sizing:border-box}body{margin:0;padding:16px 20px;font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,
sans-serif;color:var(--fg);background:var(--bg)}h1{font-size:20px;margin:0 0 4px}h2{font-size:15px;margin:0 0 8px}
small{color:var(--mut);font-weight:normal}#meta{color:var(--mut);font-size:12px;margin-bottom:12px}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 14px;margin-bottom:14px}
#overview{display:grid;grid-template-columns:minmax(0,3fr) minmax(0,1fr);gap:14px}#overview .card{margin:0}
#controls{display:flex;flex-wrap:wrap;gap:10px 16px;align-items:center;margin-bottom:8px}
#count{margin-left:auto;font-weight:600}select,input,button{font:inherit}
table{border-collapse:collapse;width:100%;table-layout:fixed}
th,td{padding:4px 8px;border-bottom:1px solid var(--line);text-align:left;white-space:nowrap;overflow:hidden;
text-overflow:ellipsis}th{cursor:pointer;user-select:none;background:#fafbfc;position:sticky;top:0}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
td.num{text-align:right;font-variant-numeric:tabular-nums}tbody tr{cursor:pointer}tbody tr:hover{background:#f0f4ff}
tbody tr.sel{background:#dbe7ff}.bar{display:inline-block;height:8px;background:var(--acc);border-radius:2px;
margin-right:6px;vertical-align:middle}.st-ok{color:#137333}.st-bad{color:#b42318;font-weight:600}
.unc{color:#b54708;font-weight:600}.pill{display:inline-block;border:1px solid var(--line);border-radius:12px;
padding:2px 10px;margin:0 6px 6px 0;cursor:pointer;background:#fff}.pill.on{border-color:var(--acc);
background:#eef4ff}#pager{margin-top:8px;display:flex;gap:10px;align-items:center}
#chart svg .gbar{cursor:pointer}#chart svg .gbar:hover rect{opacity:.8}#timeline{overflow-x:auto}
.col-idx{width:64px}.col-genre{width:110px}.col-conf{width:130px}.col-unc{width:100px}.col-dur{width:100px}
tr.detail{cursor:default;background:#fafbfc}tr.detail td{white-space:normal;overflow:visible}#hint{margin:0 0 4px}
.col-status{width:86px}.col-note{width:200px}
"""

_JS = r"""
"use strict";
(function () {
  const T0 = performance.now();
  const D = JSON.parse(document.getElementById("report-data").textContent);
  const C = D.col, N = D.n, G = D.genres, S = D.statuses;
  const hasUnc = Array.isArray(C.unc);
  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;",
    "'": "&#39;"}[c]));
  const fmt = (x) => x.toLocaleString("en-US");
  const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac"];
  const color = (g) => g < PALETTE.length ? PALETTE[g] : `hsl(${(g * 137) % 360},55%,55%)`;
  const path = (i) => D.dirs[C.dir[i]] + C.name[i];
  let lowerPaths = null;
  const okIdx = S.indexOf("ok");

  const COLS = [
    {key: "idx", label: "#", cls: "col-idx num", val: (i) => i + 1},
    {key: "genre", label: "genre", cls: "col-genre", val: (i) => C.genre[i] < 0 ? null : G[C.genre[i]]},
    {key: "conf", label: "confidence", cls: "col-conf", val: (i) => C.conf[i] < 0 ? null : C.conf[i]},
    {key: "unc", label: "uncertain", cls: "col-unc", val: (i) => !hasUnc || C.unc[i] < 0 ? null : C.unc[i]},
    {key: "dur", label: "duration s", cls: "col-dur num", val: (i) => C.dur[i] < 0 ? null : C.dur[i]},
    {key: "status", label: "status", cls: "col-status", val: (i) => S[C.status[i]]},
    {key: "note", label: "note / error", cls: "col-note", val: (i) => D.note[i] || null},
    {key: "path", label: "path", cls: "col-path", val: (i) => path(i)},
  ];
  const state = {sort: "idx", dir: 1, genre: -1, status: -1, unc: false, q: "", page: 0, size: 100, sel: -1,
    detail: ""};
  let view = new Int32Array(0);

  function cell(col, i) {
    const v = col.val(i);
    switch (col.key) {
      case "conf": return v === null ? "" : `<span class="bar" style="width:${Math.round(v / 20)}px"></span>` +
        (v / 1000).toFixed(3);
      case "unc": return !hasUnc ? "n/a" : v === null ? "" : v ? '<span class="unc">uncertain</span>' : "no";
      case "dur": return v === null ? "" : v.toFixed(1);
      case "status": return `<span class="${v === "ok" ? "st-ok" : "st-bad"}">${esc(v)}</span>`;
      default: return v === null ? "" : esc(v);
    }
  }

  function compute() {
    const g = state.genre, s = state.status, q = state.q.toLowerCase(), unc = state.unc && hasUnc;
    if (q && !lowerPaths) { lowerPaths = new Array(N); for (let i = 0; i < N; i++) lowerPaths[i] = path(i).toLowerCase(); }
    const out = new Int32Array(N); let n = 0;
    for (let i = 0; i < N; i++) {
      if (g >= 0 && C.genre[i] !== g) continue;
      if (s >= 0 && C.status[i] !== s) continue;
      if (unc && C.unc[i] !== 1) continue;
      if (q && lowerPaths[i].indexOf(q) < 0) continue;
      out[n++] = i;
    }
    const col = COLS.find((c) => c.key === state.sort), dir = state.dir;
    const arr = Array.from(out.subarray(0, n));
    if (state.sort !== "idx") {
      const key = new Array(N);
      for (const i of arr) key[i] = col.val(i);
      arr.sort((a, b) => {
        const x = key[a], y = key[b];
        if (x === y) return a - b;
        if (x === null) return 1;          // missing values last, whatever the direction
        if (y === null) return -1;
        return (x < y ? -1 : 1) * dir;
      });
    } else if (dir < 0) arr.reverse();
    view = Int32Array.from(arr);
    state.page = Math.min(state.page, Math.max(0, Math.ceil(view.length / state.size) - 1));
  }

  function renderHead() {
    $("head").innerHTML = COLS.map((c) => `<th class="${c.cls}" data-key="${c.key}"` +
      (state.sort === c.key ? ` aria-sort="${state.dir > 0 ? "ascending" : "descending"}"` : "") +
      (c.key === "unc" && !hasUnc ? ' title="these labels have no uncertain column"' : "") +
      `>${esc(c.label)}</th>`).join("");
  }

  function renderRows() {
    const start = state.page * state.size, stop = Math.min(view.length, start + state.size);
    const parts = [];
    for (let k = start; k < stop; k++) {
      const i = view[k];
      parts.push(`<tr data-row="${i}"${i === state.sel ? ' class="sel"' : ""}>` +
        COLS.map((c) => `<td class="${c.cls}"${c.key === "path" || c.key === "note" ? ` title="${esc(c.val(i) ?? "")}"` : ""}>` +
          `${cell(c, i)}</td>`).join("") + "</tr>");
      if (i === state.sel) parts.push(`<tr class="detail"><td colspan="${COLS.length}"><div id="timeline">` +
        `<h2>Timeline <small id="timeline-title">${esc(path(i))}</small></h2>${state.detail}</div></td></tr>`);
    }
    $("rows").innerHTML = parts.join("");
    const pages = Math.max(1, Math.ceil(view.length / state.size));
    $("page-info").textContent = `page ${state.page + 1} of ${fmt(pages)}`;
    $("prev").disabled = state.page === 0;
    $("next").disabled = state.page >= pages - 1;
    const c = $("count");
    c.dataset.count = String(view.length);
    c.textContent = view.length === N ? `${fmt(N)} tracks` : `${fmt(view.length)} of ${fmt(N)} tracks`;
  }

  function update(resetPage) { if (resetPage) state.page = 0; compute(); renderHead(); renderRows(); syncPills(); }

  function chart() {
    const counts = D.genre_counts, max = Math.max(1, ...counts), w = Math.max(360, 56 * G.length), h = 200;
    const bw = w / Math.max(1, G.length);
    let svg = `<svg width="${w}" height="${h + 40}" viewBox="0 0 ${w} ${h + 40}" role="img" aria-label="genre distribution">`;
    G.forEach((g, k) => {
      const bh = Math.round((h - 20) * counts[k] / max), x = k * bw + 6;
      svg += `<g class="gbar" data-genre="${k}"><title>${esc(g)}: ${counts[k]}</title>` +
        `<rect x="${x}" y="${h - bh}" width="${bw - 12}" height="${bh}" fill="${color(k)}"></rect>` +
        `<text x="${x + (bw - 12) / 2}" y="${h - bh - 4}" font-size="11" text-anchor="middle">${counts[k]}</text>` +
        `<text x="${x + (bw - 12) / 2}" y="${h + 14}" font-size="11" text-anchor="middle">${esc(g.slice(0, 10))}</text></g>`;
    });
    $("chart").innerHTML = svg + "</svg>";
    $("chart").addEventListener("click", (e) => {
      const b = e.target.closest(".gbar"); if (!b) return;
      const k = +b.dataset.genre; state.genre = state.genre === k ? -1 : k; $("genre-filter").value = state.genre; update(true);
    });
  }

  function pills() {
    $("statuses").innerHTML = S.map((s, k) => `<span class="pill" data-status="${k}">${esc(s)}: ` +
      `<b>${fmt(D.status_counts[k])}</b></span>`).join("") + `<div><small>${fmt(N)} files</small></div>`;
    $("statuses").addEventListener("click", (e) => {
      const p = e.target.closest(".pill"); if (!p) return;
      const k = +p.dataset.status; state.status = state.status === k ? -1 : k; $("status-filter").value = state.status; update(true);
    });
  }
  function syncPills() {
    document.querySelectorAll("#statuses .pill").forEach((p) => p.classList.toggle("on", +p.dataset.status === state.status));
  }

  // ---- timeline
  const TL = D.timeline;
  let tlStart = null, tlProbs = null, tlIndex = null;
  function decode(b64, Type) {
    const bin = atob(b64), buf = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) buf[i] = bin.charCodeAt(i);
    return new Type(buf.buffer);
  }
  function timeline(i) {
    if (state.sel === i) { state.sel = -1; renderRows(); return; }  // a second click closes it
    state.sel = i; state.detail = detail(i); renderRows();
  }
  function detail(i) {
    if (C.status[i] !== okIdx) return `<p class="st-bad">${esc(S[C.status[i]])}: ${esc(D.note[i] || "")}</p>`;
    if (TL.mode === "none") return "<p>No timeline: label ran without <code>--timeline</code>.</p>";
    if (!tlIndex) {
      tlIndex = new Map(TL.rows.map((r, k) => [r, k]));
      tlStart = decode(TL.start_cs, Uint32Array); tlProbs = decode(TL.probs, Uint8Array);
    }
    const k = tlIndex.get(i);
    if (k === undefined) return "<p>No timeline embedded for this track (size budget of the report).</p>";
    const a = TL.off[k], b = TL.off[k + 1], n = b - a, full = TL.mode === "full", rows = full ? G.length : 1;
    const cw = Math.max(4, Math.min(28, Math.floor(900 / Math.max(1, n)))), ch = 18, left = 96, top = 6;
    const w = Math.max(560, left + n * cw + 10), h = top + rows * ch + 34;
    let svg = `<svg id="timeline-svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" data-windows="${n}">`;
    if (full) {
      G.forEach((g, gi) => { svg += `<text x="${left - 6}" y="${top + gi * ch + 13}" font-size="11" text-anchor="end">${esc(g.slice(0, 12))}</text>`; });
      for (let j = 0; j < n; j++) for (let gi = 0; gi < G.length; gi++) {
        const p = tlProbs[(a + j) * G.length + gi] / 255;
        if (p < 0.02) continue;
        svg += `<rect class="cell" x="${left + j * cw}" y="${top + gi * ch}" width="${cw - 1}" height="${ch - 1}" ` +
          `fill="${color(gi)}" fill-opacity="${p.toFixed(2)}"><title>${(tlStart[a + j] / 100).toFixed(2)} s ${esc(G[gi])} ${p.toFixed(2)}</title></rect>`;
      }
    } else {
      svg += `<text x="${left - 6}" y="${top + 13}" font-size="11" text-anchor="end">top genre</text>`;
      for (let j = 0; j < n; j++) {
        const g = tlProbs[(a + j) * 2], p = tlProbs[(a + j) * 2 + 1] / 255;
        svg += `<rect class="cell" x="${left + j * cw}" y="${top}" width="${cw - 1}" height="${ch - 1}" fill="${color(g)}" ` +
          `fill-opacity="${Math.max(0.15, p).toFixed(2)}"><title>${(tlStart[a + j] / 100).toFixed(2)} s ${esc(G[g])} ${p.toFixed(2)}</title></rect>`;
      }
    }
    const ticks = Math.min(n, 10);
    for (let t = 0; t < ticks; t++) {
      const j = Math.round(t * (n - 1) / Math.max(1, ticks - 1));
      svg += `<text x="${left + j * cw}" y="${top + rows * ch + 14}" font-size="10">${(tlStart[a + j] / 100).toFixed(1)}</text>`;
    }
    svg += `<text x="${left}" y="${top + rows * ch + 30}" font-size="11" fill="#667085">window start (s); ` +
      `${TL.window_s} s windows; ${full ? "colour strength = probability" : "top genre per window"}</text></svg>`;
    return svg + (full ? "" : "<p><small>Only each window's top genre is embedded (report size budget).</small></p>");
  }

  // ---- wiring
  G.forEach((g, k) => $("genre-filter").insertAdjacentHTML("beforeend", `<option value="${k}">${esc(g)}</option>`));
  S.forEach((s, k) => $("status-filter").insertAdjacentHTML("beforeend", `<option value="${k}">${esc(s)}</option>`));
  if (!hasUnc) $("unc-label").style.display = "none";
  $("genre-filter").addEventListener("change", (e) => { state.genre = +e.target.value; update(true); });
  $("status-filter").addEventListener("change", (e) => { state.status = +e.target.value; update(true); });
  $("uncertain-only").addEventListener("change", (e) => { state.unc = e.target.checked; update(true); });
  let timer = null;
  $("search").addEventListener("input", (e) => { clearTimeout(timer); timer = setTimeout(() => { state.q = e.target.value; update(true); }, 150); });
  $("page-size").addEventListener("change", (e) => { state.size = +e.target.value; update(true); });
  $("prev").addEventListener("click", () => { state.page = Math.max(0, state.page - 1); renderRows(); });
  $("next").addEventListener("click", () => { state.page += 1; renderRows(); });
  $("head").addEventListener("click", (e) => {
    const th = e.target.closest("th"); if (!th) return;
    const key = th.dataset.key;
    if (state.sort === key) state.dir = -state.dir; else { state.sort = key; state.dir = key === "conf" || key === "dur" ? -1 : 1; }
    update(true);
  });
  $("rows").addEventListener("click", (e) => {
    const tr = e.target.closest("tr[data-row]"); if (tr) timeline(+tr.dataset.row);
  });
  const tlNote = TL.mode === "none" ? "no timelines" : TL.tracks_embedded < TL.tracks_total ?
    `timelines of ${fmt(TL.tracks_embedded)} of ${fmt(TL.tracks_total)} tracks (size budget)` :
    `timelines of ${fmt(TL.tracks_total)} tracks` + (TL.mode === "top1" ? " (top genre per window)" : "");
  $("meta").textContent = `${fmt(N)} files · ${fmt(D.genre_counts.reduce((a, b) => a + b, 0))} labelled · ` +
    `${tlNote} · ${D.source} · generated ${D.generated} by genre-ray report`;
  chart(); pills(); update(true);
  // scriptMs: parse the data + first render; readyMs: since navigation started (download, HTML, script)
  window.__report = {scriptMs: performance.now() - T0, readyMs: performance.now(), rows: N};
})();
"""
