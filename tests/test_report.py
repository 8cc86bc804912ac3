"""genre_ray.report: the data and HTML of the library report without a browser, the CLI, and (integration) the page
driven in a real headless Chromium served from 127.0.0.1."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from report_lib import CLASSES, library, write_library  # noqa: E402

from genre_ray.report import (LABELS, OK, REPORT_FILE, TIMELINE, build_report, read_labels_dir, render_html,  # noqa: E402
                              report_payload, write_report)

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    """300 files (some error / too-short, one with HTML in its name), timelines, in 3 shards."""
    labels, timeline = library(300, seed=1)
    odd = "/music/odd/</script><b>x</b> & 'q'.wav"
    timeline.loc[timeline["path"] == labels.loc[3, "path"], "path"] = odd
    labels.loc[3, "path"] = odd
    out = write_library(tmp_path_factory.mktemp("labels"), labels, timeline, shards=3)
    return out, labels, timeline


def _unpack(payload: dict, tl_mode: str):
    tl = payload["timeline"]
    assert tl["mode"] == tl_mode
    starts = np.frombuffer(base64.b64decode(tl["start_cs"]), "<u4")
    probs = np.frombuffer(base64.b64decode(tl["probs"]), np.uint8)
    return tl, starts, probs


def test_names_match_the_label_job():
    from genre_ray.inference import STATUS_OK
    from genre_ray.pipelines import label

    assert (LABELS, TIMELINE, OK) == (label.LABELS, label.TIMELINE, STATUS_OK)


def test_payload_is_the_labels_table(lib):
    out, labels, _ = lib
    table, timeline, classes = read_labels_dir(out / "labels")  # OUT/labels works as well as OUT
    assert classes == CLASSES and timeline is not None and "embedding" not in table.columns
    p = report_payload(table, timeline, classes, title="t")
    expect = labels.sort_values("path", ignore_index=True)
    c = p["col"]
    assert p["n"] == len(labels) == len(c["name"])
    assert [p["dirs"][d] + n for d, n in zip(c["dir"], c["name"])] == expect["path"].tolist()
    ok = expect["status"] == "ok"
    assert p["statuses"][0] == "ok" and sorted(p["statuses"]) == sorted(expect["status"].unique())
    assert dict(zip(p["statuses"], p["status_counts"])) == expect["status"].value_counts().to_dict()
    assert dict(zip(p["genres"], p["genre_counts"])) == {g: int((expect.loc[ok, "genre"] == g).sum()) for g in CLASSES}
    assert [p["genres"][g] if g >= 0 else None for g in c["genre"]] == [g if k else None for g, k in
                                                                        zip(expect["genre"], ok)]
    np.testing.assert_allclose(np.array(c["conf"])[ok] / 1000, expect.loc[ok, "confidence"], atol=5e-4)
    assert all(v == -1 for v in np.array(c["conf"])[~ok])
    assert c["unc"] == [(-1 if not k else int(u)) for u, k in zip(expect["uncertain"].fillna(False), ok)]
    np.testing.assert_allclose(c["dur"], expect["duration_s"], atol=0.051)
    assert {int(i) for i in p["note"]} == set(np.flatnonzero(expect["error"] != ""))


def test_timeline_full_top1_and_partial(lib):
    out, labels, timeline = lib
    table, tl_df, classes = read_labels_dir(out)
    expect = labels.sort_values("path", ignore_index=True)
    ok_rows = np.flatnonzero(expect["status"] == "ok")

    tl, starts, probs = _unpack(report_payload(table, tl_df, classes, title="t", timeline_budget=10**9), "full")
    assert tl["rows"] == ok_rows.tolist() and tl["tracks_embedded"] == tl["tracks_total"] == len(ok_rows)
    assert tl["window_s"] == 3.0 and len(starts) == len(timeline) and probs.size == len(timeline) * len(classes)
    k = 7  # one track's windows, in window order, with their probabilities (uint8, ±1/255)
    a, b = tl["off"][k], tl["off"][k + 1]
    mine = timeline[timeline["path"] == expect["path"][tl["rows"][k]]].sort_values("window")
    assert b - a == len(mine) == expect["n_windows"][tl["rows"][k]]
    np.testing.assert_allclose(starts[a:b] / 100, mine["start_s"], atol=0.005)
    want = mine[[f"p_{c}" for c in classes]].to_numpy()
    np.testing.assert_allclose(probs.reshape(-1, len(classes))[a:b] / 255, want, atol=0.5 / 255 + 1e-6)

    budget = len(timeline) * 6  # top genre + probability + start per window fits, all probabilities do not
    tl, _, probs = _unpack(report_payload(table, tl_df, classes, title="t", timeline_budget=budget), "top1")
    pairs = probs.reshape(-1, 2)[tl["off"][k]:tl["off"][k + 1]]
    assert pairs[:, 0].tolist() == want.argmax(axis=1).tolist()
    np.testing.assert_allclose(pairs[:, 1] / 255, want.max(axis=1), atol=0.5 / 255 + 1e-6)

    tl, starts, _ = _unpack(report_payload(table, tl_df, classes, title="t", timeline_budget=budget // 3), "top1")
    assert 0 < tl["tracks_embedded"] < tl["tracks_total"] and len(starts) * 6 <= budget // 3
    assert len(starts) == tl["off"][-1] and len(tl["rows"]) == tl["tracks_embedded"]

    assert report_payload(table, None, classes, title="t")["timeline"] == {"mode": "none"}


def test_html_is_self_contained_and_escaped(lib, tmp_path):
    out, labels, _ = lib
    dest = write_report(out, tmp_path / "r" / "lib.html", title="My <library>")
    assert [f.name for f in dest.parent.iterdir()] == ["lib.html"]  # written atomically: no temp file left
    text = dest.read_text(encoding="utf-8")
    assert "<title>My &lt;library&gt;</title>" in text
    # nothing to fetch: no external script, stylesheet, image, font or import
    assert not re.search(r"""<(script|img|iframe)[^>]*\ssrc=|@import|url\(|https?://(?!www\.w3\.org)""", text)
    assert re.findall(r"<link[^>]*>", text) == ['<link rel="icon" href="data:,">']
    assert text.count("<script") == 2 and "</script><b>" not in text  # the odd file name cannot end the script
    data = json.loads(re.search(r'<script type="application/json" id="report-data">(.*?)</script>', text, re.S)[1])
    assert data["n"] == len(labels) and data["title"] == "My <library>"
    assert "/music/odd/</script><b>x</b> & 'q'.wav" in [data["dirs"][d] + n for d, n in
                                                         zip(data["col"]["dir"], data["col"]["name"])]
    assert render_html(data) == text  # the page is a function of its data


def test_labels_without_uncertain_column(tmp_path):
    labels, timeline = library(40, seed=2)
    out = write_library(tmp_path, labels, None, drop=("uncertain", "vote_entropy", "uncertain_reason"))
    table, tl, classes = read_labels_dir(out)
    assert "uncertain" not in table.columns and tl is None
    p = report_payload(table, tl, classes, title="t")
    assert p["col"]["unc"] is None and p["timeline"] == {"mode": "none"} and p["n"] == 40
    assert "genre-ray library report" in build_report(out)


def test_cli_report(lib, tmp_path, capsys):
    from genre_ray.cli import main

    out, labels, _ = lib
    assert main(["report", str(out), "--out", str(tmp_path / "x.html")]) == 0
    assert "report:" in capsys.readouterr().out and (tmp_path / "x.html").stat().st_size > 10_000
    assert main(["report", str(out), "--out", str(tmp_path / "y.html"), "--timeline-mb", "0"]) == 0
    small = (tmp_path / "y.html").read_text()
    assert '"tracks_embedded":0' in small and len(small) < (tmp_path / "x.html").stat().st_size
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "no labels" in capsys.readouterr().err and not (tmp_path / "nothing" / REPORT_FILE).exists()
    (tmp_path / "afile").write_text("x")
    for bad, said in ((tmp_path, "is a folder"), (tmp_path / "afile" / "r.html", "is a file, not a folder")):
        assert main(["report", str(out), "--out", str(bad)]) == 2  # one line, not a traceback after the work
        assert f"--out {bad}: " in (err := capsys.readouterr().err) and said in err


def test_label_job_writes_and_logs_the_report(tmp_path, mlflow_home):
    """The label job's MLflow step (pipelines/label.py ``_log_mlflow``) writes OUT/report.html and logs it."""
    import mlflow

    from genre_ray import tracking
    from genre_ray.config import LabelConfig
    from genre_ray.pipelines.label import _log_mlflow

    labels, timeline = library(50, seed=4)
    out = write_library(tmp_path / "out", labels, timeline)
    cfg = LabelConfig(input=str(tmp_path / "music"), model=str(tmp_path / "bundle"), out=str(out),
                      experiment="report-test")
    tracking.setup(cfg.experiment)
    status = labels["status"].value_counts().to_dict()
    summary = {"model_id": "m", "label_key": "k", "status": status, "files": 50, "labelled_now": 50,
               "skipped_already_labelled": 0, "hours_of_audio": 0.1, "audio_s_per_s": 1.0, "files_per_s": 1.0,
               "seconds": 1.0, "steady_audio_s_per_s": 2.0, "startup_s": 0.5}
    with mlflow.start_run():  # run_label opens the run before labelling
        _log_mlflow(summary, out)
    run = mlflow.last_active_run()
    assert (out / REPORT_FILE).is_file() and '"n":50' in (out / REPORT_FILE).read_text()
    assert REPORT_FILE in {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}


# ------------------------------------------------------------------------------------------ browser


def _browser_or_skip() -> tuple[str, str]:
    """Debian's chromium + chromium-driver (``make test`` installs them). Missing: skip, but fail under CI=true."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        driver = None
    if chromium and driver:
        return chromium, driver
    why = ("headless browser test needs chromium + chromedriver (apt-get install chromium chromium-driver; "
           "`make test` does it as root) and selenium (pip install -e '.[dev]')")
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true: {why}")
    pytest.skip(why)


class _Server:
    """``http.server`` on 127.0.0.1 (free port) in a thread, serving one folder; records every requested path."""

    def __init__(self, folder: Path):
        self.requests: list[str] = []
        outer = self

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                outer.requests.append(self.path)
                super().do_GET()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(folder)))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "_Server":
        self.thread.start()
        return self

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


@pytest.mark.integration
def test_report_in_headless_chromium(tmp_path):
    chromium, chromedriver = _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    n = 1234
    labels, timeline = library(n, seed=3)
    site = tmp_path / "site"
    write_report(write_library(tmp_path / "labels", labels, timeline), site / "report.html")
    plain = write_library(tmp_path / "old", labels.head(60), None, drop=("uncertain", "vote_entropy",
                                                                          "uncertain_reason"))
    write_report(plain, site / "old.html")
    expect = labels.sort_values("path", ignore_index=True)
    ok = expect["status"] == "ok"

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1300", "--no-first-run", "--disable-extensions"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    with _Server(site) as server:
        driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=opts)
        try:
            wait = WebDriverWait(driver, 20)
            driver.get(server.url("report.html"))
            wait.until(lambda d: d.execute_script("return window.__report !== undefined"))
            count = lambda: int(driver.find_element(By.ID, "count").get_attribute("data-count"))  # noqa: E731
            n_rows = lambda: driver.execute_script("return document.querySelectorAll('#rows tr[data-row]').length")  # noqa: E731
            col = lambda cls: driver.execute_script(  # noqa: E731  (one round trip for a whole column)
                "return Array.from(document.querySelectorAll('#rows tr td.' + arguments[0]), td => td.textContent)", cls)

            # the table: every file counted, one page of 100 rows, last page holds the rest
            assert count() == n and driver.find_element(By.ID, "count").text == "1,234 tracks"
            assert n_rows() == 100 and driver.find_element(By.ID, "page-info").text == "page 1 of 13"
            assert col("col-path")[:3] == expect["path"][:3].tolist()
            Select(driver.find_element(By.ID, "page-size")).select_by_visible_text("500")
            assert n_rows() == 500
            for _ in range(2):
                driver.find_element(By.ID, "next").click()
            assert n_rows() == n - 1000 and driver.find_element(By.ID, "next").get_attribute("disabled")

            # sort: confidence, highest first, then lowest first (files without a confidence last both times)
            header = driver.find_element(By.CSS_SELECTOR, 'th[data-key="conf"]')
            header.click()
            best = np.sort(np.rint(expect.loc[ok, "confidence"].to_numpy() * 1000) / 1000)[::-1]
            assert [float(x) for x in col("col-conf")] == best[:500].tolist()
            assert driver.find_element(By.CSS_SELECTOR, 'th[data-key="conf"]').get_attribute("aria-sort") == "descending"
            driver.find_element(By.CSS_SELECTOR, 'th[data-key="conf"]').click()
            assert [float(x) for x in col("col-conf")] == best[::-1][:500].tolist()

            # filter by genre: only that genre, as many as it has
            Select(driver.find_element(By.ID, "genre-filter")).select_by_visible_text("metal")
            n_metal = int((expect.loc[ok, "genre"] == "metal").sum())
            assert count() == n_metal > 0 and set(col("col-genre")) == {"metal"} and n_rows() == n_metal
            # … and by status: the errors with their reasons
            Select(driver.find_element(By.ID, "genre-filter")).select_by_index(0)
            Select(driver.find_element(By.ID, "status-filter")).select_by_visible_text("error")
            assert count() == int((expect["status"] == "error").sum()) and set(col("col-status")) == {"error"}
            assert set(col("col-note")) == {"DecodeError: not audio <b>&amp;</b>"}  # shown as text, not HTML
            Select(driver.find_element(By.ID, "status-filter")).select_by_index(0)
            # … uncertain only, and text in the path
            driver.find_element(By.ID, "uncertain-only").click()
            assert count() == int(expect["uncertain"].fillna(False).sum()) and set(col("col-unc")) == {"uncertain"}
            driver.find_element(By.ID, "uncertain-only").click()
            driver.find_element(By.ID, "search").send_keys("ARTIST05/album")
            n_artist = int(expect["path"].str.contains("artist05/album").sum())
            assert n_artist > 0
            wait.until(lambda d: count() == n_artist)  # debounced: the page filters once typing pauses
            assert all("artist05/album" in p for p in col("col-path"))

            # a click on a track shows its timeline: one cell per window and genre drawn (or skipped when ~0)
            driver.find_element(By.ID, "search").clear()
            driver.find_element(By.ID, "search").send_keys("track000042")
            wait.until(lambda d: count() == 1)
            driver.find_element(By.CSS_SELECTOR, "#rows tr[data-row]").click()
            svg = wait.until(lambda d: d.find_element(By.ID, "timeline-svg"))
            assert int(svg.get_attribute("data-windows")) == int(expect.loc[expect["path"].str.contains(
                "track000042"), "n_windows"].iloc[0]) > 0
            assert len(svg.find_elements(By.CSS_SELECTOR, "rect.cell")) >= int(svg.get_attribute("data-windows"))
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shot = ARTIFACTS / "report.png"
            assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
            print(f"\nscreenshot: {shot}")
            errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            assert not errors, errors

            # labels written before the uncertain column: the page works, the filter is hidden
            driver.get(server.url("old.html"))
            wait.until(lambda d: d.execute_script("return window.__report !== undefined"))
            assert count() == 60 and not driver.find_element(By.ID, "uncertain-only").is_displayed()
            assert set(col("col-unc")) == {"n/a"}
            assert not [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        finally:
            driver.quit()
    assert server.requests == ["/report.html", "/old.html"]  # nothing else was fetched: self-contained
