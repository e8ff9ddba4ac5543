"""The web panel in a real browser: Debian's chromium driven by Playwright.

Everything is real: the Manager and its local site run real processes, the panel is
the real uvicorn server on a loopback port, and the page runs in headless chromium
(/usr/bin/chromium; Playwright cannot download browsers here, so it is launched by path).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import pytest

from lwfm import JobDefn, Manager, State
from lwfm.web import WebPanel

from ._web_threads import big_workflow

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser():  # noqa: ANN201
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture
def manager(home: Path) -> Iterator[Manager]:
    m = Manager(home)
    yield m
    m.close()


@pytest.fixture
def page(browser):  # noqa: ANN001, ANN201
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    pg.errors = errors
    yield pg
    ctx.close()


def _wait_file(path: Path) -> JobDefn:
    """A job that runs until ``path`` exists: the test decides when it ends."""
    return JobDefn(entry=f"while [ ! -e '{path}' ]; do sleep 0.05; done", kind="shell",
                   name=f"waits for {path.name}")


def test_panel_shows_running_workflow_and_updates_live(manager: Manager, page, tmp_path: Path):
    wf = manager.create_workflow("live")
    jobs = [manager.submit(_wait_file(tmp_path / f"go{i}"), workflow_id=wf.id) for i in range(3)]
    with WebPanel(manager, "127.0.0.1", 0) as panel:
        page.goto(panel.url)
        page.wait_for_selector("body[data-loaded='1']")
        page.wait_for_selector("#live.on")
        for j in jobs:
            assert page.get_attribute(f"#job-{j.id}", "data-state") == "RUNNING"
        (tmp_path / "go1").touch()
        page.wait_for_selector(f"#job-{jobs[1].id}[data-state='COMPLETE']", timeout=10_000)
        assert page.get_attribute(f"#job-{jobs[0].id}", "data-state") == "RUNNING"
        # a job submitted after the page loaded appears without a reload
        late = manager.submit(JobDefn(entry=["true"], name="late"), workflow_id=wf.id)
        page.wait_for_selector(f"#job-{late.id}[data-state='COMPLETE']", timeout=10_000)
        for i in (0, 2):
            (tmp_path / f"go{i}").touch()
        for j in (jobs[0], jobs[2]):
            page.wait_for_selector(f"#job-{j.id}[data-state='COMPLETE']", timeout=10_000)
        # the filters narrow the listing through the API
        page.select_option("#f-state", "FAILED")
        page.click("#filters button")
        page.wait_for_function("() => document.querySelectorAll('#jobs tbody tr').length === 0")
    assert page.errors == []


def test_thread_shows_future_and_dead_triggers_and_all_join_inputs(manager: Manager, page,
                                                                 tmp_path: Path):
    wf = manager.create_workflow("futures")
    a = manager.submit(_wait_file(tmp_path / "go"), workflow_id=wf.id)
    b = manager.submit(JobDefn(entry=["true"], name="b"), workflow_id=wf.id)
    join = manager.on_all([a.id, b.id], JobDefn(entry=["echo", "joined"], name="the join"))
    bad = manager.submit(JobDefn(entry="exit 3", kind="shell", name="fails"), workflow_id=wf.id)
    never = manager.on(bad.id, JobDefn(entry=["echo", "never"], name="never runs"))
    manager.wait_all([b.id, bad.id], timeout=30)
    deadline = time.monotonic() + 30
    while manager.store.get_trigger(never.trigger_id).status.value != "dead":   # it will never run
        assert time.monotonic() < deadline, "the trigger on a failed job did not die"
        time.sleep(0.05)
    with WebPanel(manager, "127.0.0.1", 0) as panel:
        page.goto(f"{panel.url}thread/{wf.id}")
        page.wait_for_selector("body[data-drawn]")
        node = "(id) => { const n = window.lwfmCy.getElementById(id); return n.nonempty() ? " \
               "{kind: n.data('kind'), state: n.data('state'), border: n.style('border-style')," \
               " label: n.data('label'), inputs: n.incomers('node').map(x => x.id()).sort()} : null }"
        fut = page.evaluate(node, join.job_id)
        assert fut["kind"] == "future" and fut["state"] == "pending" and fut["border"] == "dashed"
        assert fut["inputs"] == sorted([a.id, b.id])          # a join shows ALL its inputs
        dead = page.evaluate(node, never.job_id)
        assert dead["kind"] == "future" and dead["state"] == "dead"
        assert "dead" in dead["label"]
        # clicking shows the node's facts: a dead trigger says why
        page.evaluate("(id) => { window.lwfmCy.getElementById(id).emit('tap'); }", never.job_id)
        page.wait_for_selector("#facts dl")
        assert "ended FAILED" in page.inner_text("#facts")
        assert page.evaluate("(id) => window.lwfmCy.getElementById(id).hasClass('lineage')", bad.id)
        # the join fires when its last input ends: the future becomes a job, live
        (tmp_path / "go").touch()
        manager.wait(join.job_id, timeout=30)
        page.wait_for_function(
            "(id) => window.lwfmCy.getElementById(id).data('kind') === 'job'", arg=join.job_id,
            timeout=10_000)
    assert page.errors == []


def test_cancel_button_cancels_and_page_updates(manager: Manager, page, tmp_path: Path):
    job = manager.submit(_wait_file(tmp_path / "never"), workflow_id=manager.create_workflow("c").id)
    with WebPanel(manager, "127.0.0.1", 0, allow_cancel=True) as panel:
        page.goto(f"{panel.url}jobs/{job.id}")
        page.wait_for_selector("#job-state[data-state='RUNNING']")
        page.click("#cancel")
        page.wait_for_selector("#job-state[data-state='CANCELLED']", timeout=10_000)
        assert page.is_hidden("#cancel")
        assert "CANCELLED" in page.inner_text("#history")
    assert manager.status(job.id).state is State.CANCELLED


def test_read_only_panel_has_no_cancel_button(manager: Manager, page, tmp_path: Path):
    job = manager.submit(_wait_file(tmp_path / "go"))
    try:
        with WebPanel(manager, "127.0.0.1", 0) as panel:
            page.goto(f"{panel.url}jobs/{job.id}")
            page.wait_for_selector("body[data-loaded='1']")
            assert page.is_hidden("#cancel")
    finally:
        (tmp_path / "go").touch()
        manager.wait(job.id, timeout=30)


def test_sparql_page_refuses_an_update_and_runs_a_query(manager: Manager, page):
    manager.submit(JobDefn(entry=["true"], name="queried"))
    with WebPanel(manager, "127.0.0.1", 0) as panel:
        page.goto(f"{panel.url}sparql")
        page.fill("#query", "INSERT DATA { <urn:a> <urn:b> <urn:c> }")
        page.click("#run")
        page.wait_for_selector("#results .error")
        assert "read-only" in page.inner_text("#results .error")
        page.fill("#query", "SELECT ?name WHERE { ?j a lwfm:Job ; schema:name ?name }")
        page.click("#run")
        page.wait_for_selector("#results table")
        assert "queried" in page.inner_text("#results table")
        csv = page.request.get(page.get_attribute("#dl-csv", "href") and
                               panel.url.rstrip("/") + page.get_attribute("#dl-csv", "href"))
        assert csv.ok and "queried" in csv.text()
    assert page.errors == []


# How many of the sampled job nodes have a pixel of their own fill colour (any alpha above
# 100, each channel within 40) within a few pixels of their centre, on any of cytoscape's
# canvases; and how many were sampled.
_NODES_ON_CANVAS = """() => {
  const layers = [...document.querySelectorAll('#cy canvas')].map(
    (c) => [c.width, c.getContext('2d').getImageData(0, 0, c.width, c.height).data]);
  const near = (hex, d, k) => { const v = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
    return d[k + 3] > 100 && v.every((c, j) => Math.abs(d[k + j] - c) < 40); };
  const jobs = window.lwfmCy.nodes('[kind = "job"]');
  let seen = 0, sampled = 0;
  for (let i = 0; i < jobs.length; i += 37) {
    const p = jobs[i].renderedPosition(), hex = jobs[i].data('color');
    let found = false;
    sampled++;
    for (const [w, d] of layers)
      for (let dy = -2; dy <= 2 && !found; dy++)
        for (let dx = -4; dx <= 4 && !found; dx++)
          found = near(hex, d, ((Math.round(p.y) + dy) * w + Math.round(p.x) + dx) * 4);
    if (found) seen++;
  }
  return [seen, sampled];
}"""


def test_a_10000_node_thread_renders(manager: Manager, page):
    wid = big_workflow(manager.store, 10_000, foreign_every=50)
    with WebPanel(manager, "127.0.0.1", 0) as panel:
        t0 = time.monotonic()
        page.goto(f"{panel.url}thread/{wid}")
        page.wait_for_selector("body[data-drawn]", timeout=60_000)
        took = time.monotonic() - t0
        drawn = int(page.get_attribute("body", "data-drawn"))
        assert drawn == 10_000 + 1            # every job, and the box of the other instance
        assert page.evaluate("() => window.lwfmCy.nodes('[kind = \"instance\"]').length") == 1
        assert "10000 nodes" in page.inner_text("#thread-count")
        # "drawn" means on the canvas: every 37th job is there, in its own colour
        seen, sampled = page.evaluate(_NODES_ON_CANVAS)
        assert sampled > 250 and seen == sampled, (seen, sampled)
        # a big thread's edges are on their own canvas, under cytoscape's: drawn too
        assert page.evaluate("() => { const c = document.querySelector('#cy canvas.lwfm-edges');"
                             " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
                             " let n = 0; for (let k = 3; k < d.length; k += 4) if (d[k] > 0) n++;"
                             " return n; }") > 10_000
        # still usable: a click highlights the lineage
        page.evaluate("() => { window.lwfmCy.nodes('[kind = \"job\"]').last().emit('tap'); }")
        assert page.evaluate("() => window.lwfmCy.$('.lineage').length") > 1
    assert page.errors == [], took


def test_a_big_thread_updates_live(manager: Manager, page):
    """A big thread (edges on their own canvas) takes a new job and its edge live."""
    wid = big_workflow(manager.store, 2_000)
    with WebPanel(manager, "127.0.0.1", 0) as panel:
        page.goto(f"{panel.url}thread/{wid}")
        page.wait_for_selector("body[data-drawn='2000']", state="attached", timeout=60_000)
        page.wait_for_selector("#live.on")
        root = page.evaluate("() => window.lwfmCy.nodes('[kind = \"job\"]')[0].id()")
        job = manager.submit(JobDefn(entry=["true"], name="late"), workflow_id=wid, parent_id=root)
        page.wait_for_function("(id) => window.lwfmCy.getElementById(id).nonempty()", arg=job.id,
                               timeout=10_000)
        assert "2001 nodes, 2000 edges" in page.inner_text("#thread-count")
        # its edge is drawn: the new job is in its parent's lineage
        page.evaluate("(id) => { window.lwfmCy.getElementById(id).emit('tap'); }", job.id)
        assert page.evaluate("(id) => window.lwfmCy.getElementById(id).hasClass('lineage')", root)
    assert page.errors == []


def test_non_loopback_bind_without_token_is_401(manager: Manager, page):
    with WebPanel(manager, "0.0.0.0", 0) as panel:
        assert panel.token
        url = f"http://127.0.0.1:{panel.bound_port}/"
        resp = page.goto(url + "api/jobs")
        assert resp.status == 401
        resp = page.goto(url)
        assert resp.status == 401
        resp = page.goto(f"{url}?token={panel.token}")   # the link: sets the cookie
        assert resp.status == 200 and page.url == url
        page.wait_for_selector("body[data-loaded='1']")
        assert page.request.get(url + "api/jobs").status == 200
    mode = (manager.home / "web-token").stat().st_mode & 0o777
    assert mode == 0o600
