"""Web panel benchmark: what a user of ``lwfm serve --http`` waits for.

Run: ``python tests/bench/bench_web.py [--jobs N] [--thread N] [--runs N]``. Human-readable
lines first, then ONE JSON object on the last line. Goals are reported, never asserted.

A home holds N (default 100,000) ended jobs, written through the store in batches; one
workflow among them is a thread of T (default 10,000) jobs, every 50th from another
instance. The real panel (uvicorn on loopback) serves it; the browser is Debian's
chromium, headless, driven by Playwright.

* ``api_jobs_ms`` (goal <= 50): the first page of ``GET /api/jobs`` (50 jobs), over HTTP,
  median of the runs. Peer: ``sqlite_page_ms``, the same page read straight from the
  database file with ``sqlite3`` (the floor under any server).
* ``first_paint_10k_ms`` (goal <= 2000): navigation to the thread page until cytoscape
  has drawn all T nodes (the page marks it), median. ``first_view_10k_ms``: until
  cytoscape's first frame is on screen (the page marks it; it holds the whole thread). Peer:
  ``first_paint_100_ms``, the same for a 100-job thread (what the page costs at all).
* ``update_latency_ms`` (goal <= 1000, median): a real job that waits for a file ends
  when the file appears; from creating the file until the jobs page shows the job
  COMPLETE. It includes the job's own 50 ms poll for the file and its exit being seen.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lwfm import JobDefn, Manager  # noqa: E402
from lwfm.web import WebPanel  # noqa: E402
from tests._web_threads import big_workflow  # noqa: E402

GOALS = {"first_paint_10k_ms": 2000, "update_latency_ms": 1000, "api_jobs_ms": 50}


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


def _med(v: list[float]) -> float:
    return round(statistics.median(v), 1)


def _paint(page, url: str, nodes: int) -> tuple[float, float]:  # noqa: ANN001
    """(navigation -> first chunk drawn, navigation -> every node drawn), in ms."""
    t0 = time.perf_counter()
    page.goto(url)
    page.wait_for_selector("body[data-first-paint-ms]", state="attached", timeout=120_000)
    first = _ms(t0)
    page.wait_for_selector("body[data-drawn]", state="attached", timeout=120_000)
    took = _ms(t0)
    drawn = int(page.get_attribute("body", "data-drawn"))
    assert drawn >= nodes, (drawn, nodes)
    return first, took


def main() -> dict[str, object]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--thread", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    t_start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="lwfm-bench-web-"))
    os.environ["LWFM_HOME"] = str(work / "home")
    for var in ("LWFM_JOB_ID", "LWFM_WORKFLOW_ID", "LWFM_PARENT_ID", "LWFM_STORE_URL"):
        os.environ.pop(var, None)
    from playwright.sync_api import sync_playwright
    res: dict[str, object] = {}
    try:
        with Manager(work / "home") as m:
            t0 = time.perf_counter()
            big = big_workflow(m.store, args.thread, name="thread", foreign_every=50)
            small = big_workflow(m.store, 100, name="small")
            rest = args.jobs - args.thread - 100
            if rest > 0:
                big_workflow(m.store, rest, name="bulk", fanout=10, batch=5000)
            print(f"built {args.jobs} jobs in {time.perf_counter() - t0:.1f} s")
            db = sqlite3.connect(str(work / "home" / "lwfm.db"))
            floor = []
            for _ in range(args.runs * 4):
                t0 = time.perf_counter()
                db.execute("SELECT id, name, site, state, exit_code, workflow_id, parent_id, "
                           "created, started, ended, triggered_by, instance_id FROM jobs "
                           "ORDER BY created DESC, id DESC LIMIT 51").fetchall()
                floor.append(_ms(t0))
            db.close()
            with WebPanel(m, "127.0.0.1", 0) as panel, sync_playwright() as pw:
                api = []
                for _ in range(args.runs * 4):
                    t0 = time.perf_counter()
                    with urllib.request.urlopen(panel.url + "api/jobs", timeout=30) as r:
                        page_json = json.loads(r.read())
                    api.append(_ms(t0))
                assert len(page_json["jobs"]) == 50
                browser = pw.chromium.launch(executable_path="/usr/bin/chromium",
                                             args=["--no-sandbox", "--disable-gpu"])
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                _paint(page, f"{panel.url}thread/{small}", 100)   # warm-up
                paint_small, paint_big, view_big = [], [], []
                for _ in range(max(3, args.runs // 2)):
                    paint_small.append(_paint(page, f"{panel.url}thread/{small}", 100)[1])
                    first, full = _paint(page, f"{panel.url}thread/{big}", args.thread)
                    view_big.append(first)
                    paint_big.append(full)
                wf = m.create_workflow("live")
                page.goto(f"{panel.url}?workflow={wf.id}")
                page.wait_for_selector("#live.on")
                lat = []
                for i in range(args.runs * 2):
                    gate = work / f"go{i}"
                    job = m.submit(JobDefn(entry=f"while [ ! -e '{gate}' ]; do sleep 0.05; done",
                                           kind="shell", name=f"live {i}"), workflow_id=wf.id)
                    page.wait_for_selector(f"#job-{job.id}[data-state='RUNNING']", timeout=30_000)
                    t0 = time.perf_counter()
                    gate.touch()
                    page.wait_for_selector(f"#job-{job.id}[data-state='COMPLETE']", timeout=30_000)
                    lat.append(_ms(t0))
                browser.close()
        for name, v in (("sqlite_page_ms", floor), ("api_jobs_ms", api),
                        ("first_paint_100_ms", paint_small), ("first_view_10k_ms", view_big),
                        ("first_paint_10k_ms", paint_big),
                        ("update_latency_ms", lat)):
            res[name] = _med(v)
            print(f"{name:22s} median {statistics.median(v):8.1f}  min {min(v):8.1f}  "
                  f"max {max(v):8.1f}  ({len(v)} runs)")
        res["api_vs_sqlite"] = round(res["api_jobs_ms"] / max(res["sqlite_page_ms"], 1e-3), 1)
        res["paint_10k_vs_100"] = round(res["first_paint_10k_ms"] / res["first_paint_100_ms"], 1)
        res["jobs"] = args.jobs
        res["thread_nodes"] = args.thread
        res["goals"] = {f"{k}<={v}": res[k] <= v for k, v in GOALS.items()}
        res["load_avg_1m"] = round(os.getloadavg()[0], 2)
        res["cpus"] = os.cpu_count()
        res["bench_s"] = round(time.perf_counter() - t_start, 1)
        return res
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    result = main()
    sys.stdout.flush()
    print(json.dumps(result))
