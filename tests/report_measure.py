"""Size and speed of the library report at scale, in headless Chromium (not a test; prints JSON).

    .venv/bin/python tests/report_measure.py --tracks 100000            # with per-window timelines
    .venv/bin/python tests/report_measure.py --tracks 100000 --no-timeline

Writes a synthetic labelled library (tests/report_lib.py: ~10 windows per track), builds the page with
``genre_ray.report.write_report``, serves it from 127.0.0.1 and loads it in Debian's chromium through
/usr/bin/chromedriver. Times: ``ready_ms`` = navigation start → first table rendered (download, HTML parse, JSON
parse, first render); ``script_ms`` = the page script alone; then one click/selection each (wall time of the
WebDriver call, which includes its round trip).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from report_lib import library, write_library  # noqa: E402
from test_report import _Server  # noqa: E402

from genre_ray.report import write_report  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tracks", type=int, default=100_000)
    ap.add_argument("--no-timeline", action="store_true")
    args = ap.parse_args()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    with tempfile.TemporaryDirectory() as tmp:
        labels, timeline = library(args.tracks)
        out = write_library(Path(tmp) / "labels", labels, None if args.no_timeline else timeline)
        t0 = time.perf_counter()
        page = write_report(out, Path(tmp) / "site" / "report.html")
        result = {"tracks": args.tracks, "timeline_windows": 0 if args.no_timeline else len(timeline),
                  "build_s": round(time.perf_counter() - t0, 2), "bytes": page.stat().st_size}
        opts = webdriver.ChromeOptions()
        opts.binary_location = "/usr/bin/chromium"
        for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1000"):
            opts.add_argument(a)
        with _Server(page.parent) as server:
            d = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=opts)
            try:
                t0 = time.perf_counter()
                d.get(server.url("report.html"))
                WebDriverWait(d, 120).until(lambda x: x.execute_script("return window.__report !== undefined"))
                result["get_s"] = round(time.perf_counter() - t0, 2)
                r = d.execute_script("return window.__report")
                result.update(ready_ms=round(r["readyMs"]), script_ms=round(r["scriptMs"]))

                def timed(name, action):
                    t = time.perf_counter()
                    action()
                    result[name] = round((time.perf_counter() - t) * 1000)

                timed("sort_confidence_ms", lambda: d.find_element(By.CSS_SELECTOR, 'th[data-key="conf"]').click())
                timed("sort_path_ms", lambda: d.find_element(By.CSS_SELECTOR, 'th[data-key="path"]').click())
                timed("filter_genre_ms", lambda: Select(d.find_element(By.ID, "genre-filter")).select_by_index(3))
                timed("timeline_click_ms", lambda: d.find_element(By.CSS_SELECTOR, "#rows tr[data-row]").click())
                result["rows_shown"] = d.execute_script("return document.querySelectorAll('#rows tr[data-row]').length")
                result["heap_mb"] = round(d.execute_script("return performance.memory.usedJSHeapSize") / 2**20, 1)
            finally:
                d.quit()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
