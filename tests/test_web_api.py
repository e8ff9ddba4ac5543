"""The web panel's JSON API and its guards, over real HTTP to the real uvicorn server
(no browser: these are what a script or a hostile page would send)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from lwfm import InvalidInput, JobDefn, Manager, State
from lwfm.web import WebPanel, parse_bind

from ._web_threads import big_workflow


@pytest.fixture
def manager(home: Path) -> Iterator[Manager]:
    m = Manager(home)
    yield m
    m.close()


def _get(url: str, headers: dict[str, str] | None = None, method: str = "GET",
         ) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def _json(url: str, **kw: Any) -> Any:
    status, _, body = _get(url, **kw)
    assert status == 200, body
    return json.loads(body)


def _csrf(panel: WebPanel) -> str:
    _, _, body = _get(panel.url)
    return re.search(rb'name="lwfm-csrf" content="([^"]+)"', body).group(1).decode()


def test_parse_bind() -> None:
    assert parse_bind("8765") == ("127.0.0.1", 8765)
    assert parse_bind("0.0.0.0:80") == ("0.0.0.0", 80)
    assert parse_bind("[::1]:9000") == ("::1", 9000)
    for bad in ("", "host:", "x:99999", "port"):
        with pytest.raises(InvalidInput):
            parse_bind(bad)


def test_jobs_keyset_pages_and_filters(manager: Manager) -> None:
    wid = big_workflow(manager.store, 120, name="paged")
    other = manager.create_workflow("other")
    manager.wait(manager.submit(JobDefn(entry=["true"], name="elsewhere"), workflow_id=other.id).id)
    with WebPanel(manager, "127.0.0.1", 0) as panel:
        seen: list[dict[str, Any]] = []
        after = ""
        while True:
            page = _json(f"{panel.url}api/jobs?workflow=paged&after={after}")
            seen += page["jobs"]
            if not page["next"]:
                break
            after = page["next"]
        assert len(seen) == 120 and len({j["id"] for j in seen}) == 120
        assert [j["created"] for j in seen] == sorted((j["created"] for j in seen), reverse=True)
        failed = _json(f"{panel.url}api/jobs?workflow={wid}&state=failed&limit=500")["jobs"]
        assert failed and all(j["state"] == "FAILED" for j in failed)
        mine = _json(f"{panel.url}api/jobs?workflow={other.id}")["jobs"]
        assert [j["name"] for j in mine] == ["elsewhere"]
        since = seen[9]["created"]
        recent = _json(f"{panel.url}api/jobs?workflow=paged&since={urllib.parse.quote(since)}")
        assert len(recent["jobs"]) == 10
        assert _json(f"{panel.url}api/jobs?site=nowhere")["jobs"] == []
        for q, word in (("state=SLEEPY", "unknown state"), ("after=%%%", "cursor"),
                        ("since=yesterday", "ISO 8601"), ("workflow=nope", "no workflow"),
                        ("limit=0", "limit")):
            status, _, body = _get(f"{panel.url}api/jobs?{q}")
            assert status in (400, 404) and word in json.loads(body)["error"], (q, body)


def test_job_detail_never_shows_a_secret(manager: Manager, tmp_path: Path) -> None:
    job = manager.submit(JobDefn(entry="echo hello; echo made > out.txt", kind="shell",
                                 name="secretive", cwd=str(tmp_path),
                                 env={"API_TOKEN": "s3cr3t-value", "PLAIN": "fine"}))
    manager.wait(job.id, timeout=30)
    manager.put(str(tmp_path / "out.txt"), str(tmp_path / "copy.txt"), job_id=job.id)
    waiter = manager.on(job.id, JobDefn(entry=["true"], name="after"), states=["FAILED"])
    with WebPanel(manager, "127.0.0.1", 0) as panel:
        d = _json(f"{panel.url}api/jobs/{job.id[:10]}")
        assert d["job"]["defn"]["env"] == {"API_TOKEN": "<redacted>", "PLAIN": "fine"}
        assert [s["state"] for s in d["history"]][-1] == "COMPLETE"
        assert "hello" in d["log"]["text"]
        assert [x["direction"] for x in d["data"]] == ["put"]
        assert [t["id"] for t in d["waiting"]] == [waiter.trigger_id]
        for path in ("api/jobs", f"api/jobs/{job.id}", f"jobs/{job.id}", "api/sites",
                     f"api/thread/{job.context.workflow_id or 'x'}"):
            _, _, body = _get(panel.url + path)
            assert b"s3cr3t" not in body, path


def test_security_headers_no_cors_and_loopback_host_only(manager: Manager) -> None:
    with WebPanel(manager, "127.0.0.1", 0) as panel:
        status, h, body = _get(f"{panel.url}api/jobs", headers={"Origin": "http://evil.example"})
        assert status == 200
        assert "script-src 'self'" in h["content-security-policy"]
        assert "unsafe-inline" not in h["content-security-policy"]
        assert not [k for k in h if k.startswith("access-control-")]
        _, _, page = _get(panel.url)
        assert not re.search(rb"<script(?![^>]*\bsrc=)", page)   # no inline script
        status, _, _ = _get(f"{panel.url}api/jobs", headers={"Host": "evil.example"})
        assert status == 421   # DNS rebinding: a foreign name pointed at 127.0.0.1


def test_cancel_needs_allow_cancel_and_csrf(manager: Manager, tmp_path: Path) -> None:
    job = manager.submit(JobDefn(entry=["sleep", "60"], name="long"))
    with WebPanel(manager, "127.0.0.1", 0) as panel:
        csrf = _csrf(panel)
        status, _, body = _get(f"{panel.url}api/jobs/{job.id}/cancel", method="POST",
                               headers={"X-CSRF-Token": csrf})
        assert status == 403 and b"--allow-cancel" in body
    assert manager.status(job.id).state is State.RUNNING
    with WebPanel(manager, "127.0.0.1", 0, allow_cancel=True) as panel:
        url = f"{panel.url}api/jobs/{job.id}/cancel"
        assert _get(url, method="POST")[0] == 403                       # no CSRF token
        assert _get(url, method="POST", headers={"X-CSRF-Token": "guess"})[0] == 403
        csrf = _csrf(panel)
        assert _get(url, method="POST", headers={"X-CSRF-Token": csrf,
                                                  "Origin": "http://evil.example"})[0] == 403
        assert manager.status(job.id).state is State.RUNNING
        status, _, body = _get(url, method="POST", headers={"X-CSRF-Token": csrf})
        assert status == 200 and json.loads(body)["cancelled"] is True
    assert manager.status(job.id).state is State.CANCELLED


def test_token_off_loopback(manager: Manager) -> None:
    with WebPanel(manager, "0.0.0.0", 0) as panel:
        url = f"http://127.0.0.1:{panel.bound_port}/api/jobs"
        assert _get(url)[0] == 401
        assert _get(url, headers={"Authorization": "Bearer wrong"})[0] == 401
        assert _get(url, headers={"Authorization": f"Bearer {panel.token}"})[0] == 200
        token = panel.token
    tok = manager.home / "web-token"
    assert tok.read_text().strip() == token and tok.stat().st_mode & 0o777 == 0o600
    with WebPanel(manager, "0.0.0.0", 0) as again:
        assert again.token == token   # kept, not regenerated on each start


def test_sparql_api_read_only_with_downloads(manager: Manager) -> None:
    manager.wait(manager.submit(JobDefn(entry=["true"], name="q")).id)
    with WebPanel(manager, "127.0.0.1", 0) as panel:
        q = urllib.parse.quote("SELECT ?name WHERE { ?j a lwfm:Job ; schema:name ?name }")
        status, h, body = _get(f"{panel.url}api/sparql?format=csv&query={q}")
        assert status == 200 and h["content-type"].startswith("text/csv")
        assert "attachment" in h["content-disposition"] and b"q" in body
        res = _json(f"{panel.url}api/sparql?format=json&query={q}")
        assert res["results"]["bindings"][0]["name"]["value"] == "q"
        for upd in ("INSERT DATA { <urn:a> <urn:b> <urn:c> }", "DROP ALL"):
            status, _, body = _get(f"{panel.url}api/sparql?query={urllib.parse.quote(upd)}")
            assert status == 400 and "read-only" in json.loads(body)["error"]
        n = _json(f"{panel.url}api/sparql?format=table&query=" + urllib.parse.quote(
            "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }"))
        assert int(n["rows"][0][0]) > 0


def test_sites_and_bundles_api(manager: Manager) -> None:
    with WebPanel(manager, "127.0.0.1", 0) as panel:
        sites = _json(f"{panel.url}api/sites")
        local = next(s for s in sites if s["name"] == "local")
        assert "run" in local["pillars"] and local["auth_current"] is True
        assert local["compute_types"]
        assert _json(f"{panel.url}api/bundles") == []


def test_close_stops_what_it_started(manager: Manager) -> None:
    before = {t.name for t in threading.enumerate()}
    panel = WebPanel(manager, "127.0.0.1", 0).start()
    url = panel.url
    assert _get(url)[0] == 200
    panel.close()
    left = {t.name for t in threading.enumerate() if t.is_alive()} - before
    assert not [n for n in left if n.startswith("lwfm-web")], left
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=5)


def test_cli_serve_http(home: Path) -> None:
    env = {**os.environ, "LWFM_HOME": str(home)}
    bad = subprocess.run([sys.executable, "-m", "lwfm.cli", "serve", "--http", "nope:x"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "[HOST:]PORT" in bad.stderr
    bad = subprocess.run([sys.executable, "-m", "lwfm.cli", "serve", "--allow-cancel"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "--http" in bad.stderr
    p = subprocess.Popen([sys.executable, "-m", "lwfm.cli", "serve", "--http", "127.0.0.1:0"],
                         env=env, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stderr.readline()
        url = re.search(r"at (http://\S+/)", line).group(1)
        assert "read-only" in line
        assert _get(url + "api/jobs")[0] == 200
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=30) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
