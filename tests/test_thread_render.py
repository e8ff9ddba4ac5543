"""`lwfm thread` renderings draw joins and triggers as the web panel does: an edge from
every job a join waited on, pending triggers as dashed future nodes, dead ones with
their reason. Real jobs on the local site, the real graph, the real `dot`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from lwfm import JobDefn, Manager


def test_thread_renderings_show_joins_futures_and_dead_triggers(home: Path, tmp_path: Path):
    with Manager(home) as m:
        wf = m.create_workflow("rendered")
        a = m.submit(JobDefn(entry=["true"], name="a"), workflow_id=wf.id)
        b = m.submit(JobDefn(entry=["true"], name="b"), workflow_id=wf.id)
        join = m.on_all([a.id, b.id], JobDefn(entry=["echo", "joined"], name="the join"))
        gate = m.submit(JobDefn(entry=f"while [ ! -e '{tmp_path / 'go'}' ]; do sleep 0.05; done",
                                kind="shell", name="gate"), workflow_id=wf.id)
        pending = m.on(gate.id, JobDefn(entry=["true"], name="later"))
        bad = m.submit(JobDefn(entry="exit 3", kind="shell", name="fails"), workflow_id=wf.id)
        dead = m.on(bad.id, JobDefn(entry=["true"], name="never"))
        m.wait_all([join.job_id, bad.id], timeout=60)
        m.wait(a.id)
        from lwfm.provenance import render
        root = m.graph.thread(wf.id)
        dot = render.to_dot(root)
        for src in (a.id, b.id):   # the join: an edge from each input, not only its parent
            assert f'"{src}" -> "{join.job_id}" [color=darkorange, style=dashed' in dot
        assert f'"{gate.id}" -> "{pending.job_id}" [color=blue3, style=dashed' in dot
        assert f'"{bad.id}" -> "{dead.job_id}" [color=red3, style=dashed' in dot
        assert "ended FAILED" in dot and 'style="rounded,dashed"' in dot
        svg = render.to_svg(root)
        assert svg.count("stroke-dasharray") >= 4
        (tmp_path / "go").touch()
        m.wait(gate.id, timeout=30)
    env = {**os.environ, "LWFM_HOME": str(home)}
    r = subprocess.run([sys.executable, "-m", "lwfm.cli", "thread", wf.id, "--format", "json"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    nodes = {}
    stack = [json.loads(r.stdout)]
    while stack:
        n = stack.pop()
        nodes[n["id"]] = n
        stack.extend(n["children"])
    assert sorted(nodes[join.job_id]["inputs"]) == sorted([a.id, b.id])
    assert nodes[dead.job_id]["kind"] == "future" and nodes[dead.job_id]["state"] == "dead"
    r = subprocess.run([sys.executable, "-m", "lwfm.cli", "thread", wf.id], env=env,
                       capture_output=True, text=True, timeout=120)
    assert "join of" in r.stdout and "✗ dead trigger" in r.stdout
