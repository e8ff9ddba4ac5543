"""The `lwfm` command line, run as a real process the way users and scripts run it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

COMMANDS = ["run", "status", "jobs", "wait", "cancel", "log", "put", "get", "find", "sites",
            "serve", "demo", "workflows", "triggers"]


def lwfm(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lwfm.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "LWFM_HOME": str(home)})


@pytest.mark.parametrize("cmd", COMMANDS)
def test_every_command_has_help(home: Path, cmd: str) -> None:
    r = lwfm(home, cmd, "--help")
    assert r.returncode == 0 and "Usage:" in r.stdout


def test_run_wait_status_jobs_log_json(home: Path) -> None:
    r = lwfm(home, "run", "--wait", "--json", "--name", "greet", "--", "echo", "hi there")
    assert r.returncode == 0, r.stderr
    job = json.loads(r.stdout)
    assert job["state"] == "COMPLETE" and job["name"] == "greet"
    st = json.loads(lwfm(home, "status", job["id"][:8], "--history", "--json").stdout)
    assert [h["state"] for h in st["history"]] == ["PENDING", "RUNNING", "COMPLETE"]
    assert lwfm(home, "log", job["id"]).stdout == "hi there\n"
    listed = json.loads(lwfm(home, "jobs", "--state", "complete", "--json").stdout)
    assert [j["id"] for j in listed] == [job["id"]]
    fail = lwfm(home, "run", "--wait", "--shell", "exit 5")
    assert fail.returncode == 1 and "FAILED" in fail.stdout


def test_env_values_pass_through_exactly(home: Path) -> None:
    r = lwfm(home, "run", "--wait", "--env", "A=true", "--env", "B=1.50", "--env", "C=[1,2]",
             "--shell", "--", 'echo "$A|$B|$C"')
    assert r.returncode == 0, r.stderr
    assert lwfm(home, "log", r.stdout.split()[0]).stdout == "true|1.50|[1,2]\n"


def _sigint_default() -> None:
    """The child takes Ctrl-C as a terminal's foreground command does, even when pytest
    runs as a background job (whose children start with SIGINT ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_interrupting_run_wait_leaves_the_job_running_and_recorded(home: Path) -> None:
    """Ctrl-C stops the waiting, not the job; the job still records how it ended."""
    p = subprocess.Popen([sys.executable, "-m", "lwfm.cli", "run", "--wait", "--shell", "--",
                          "sleep 6; exit 0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env={**os.environ, "LWFM_HOME": str(home)},
                         preexec_fn=_sigint_default)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # until the job is recorded as running
        if json.loads(lwfm(home, "jobs", "--state", "running", "--json").stdout):
            break
        time.sleep(0.1)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 1 and "stopped waiting; job" in err and "Traceback" not in err
    job_id = err.split("stopped waiting; job ")[1].split()[0]
    w = lwfm(home, "wait", job_id, "--timeout", "60")
    assert w.returncode == 0 and "COMPLETE" in w.stdout


def test_run_detached_then_wait(home: Path) -> None:
    r = lwfm(home, "run", "--shell", "sleep 0.3")
    assert r.returncode == 0, r.stderr
    w = lwfm(home, "wait", r.stdout.strip(), "--timeout", "60")
    assert w.returncode == 0 and "COMPLETE" in w.stdout


def test_put_find_get(home: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("payload\n")
    r = lwfm(home, "put", str(src), str(tmp_path / "repo" / "in.txt"), "--meta", "kind=raw",
             "--meta", "n=3", "--json")
    assert r.returncode == 0, r.stderr
    put = json.loads(r.stdout)
    assert put["metadata"] == {"kind": "raw", "n": 3}
    found = json.loads(lwfm(home, "find", "kind=ra*", "--json").stdout)
    assert [d["id"] for d in found] == [put["id"]]
    assert json.loads(lwfm(home, "find", "n=3", "--json").stdout)[0]["id"] == put["id"]
    g = lwfm(home, "get", put["url"], str(tmp_path / "back.txt"))
    assert g.returncode == 0 and (tmp_path / "back.txt").read_text() == "payload\n"


def test_bad_destinations_are_clear_errors_that_change_nothing(home: Path, tmp_path: Path) -> None:
    src = tmp_path / "a.txt"
    src.write_text("new\n")
    kept = tmp_path / "kept.txt"
    kept.write_text("OLD\n")
    for args in (["put", str(src), str(tmp_path)],                # a directory
                 ["put", str(src), "/proc/lwfm-x"],               # cannot be written
                 ["put", str(src), str(src / "x")],               # under a file
                 ["get", str(src), "/proc/lwfm-y"],
                 ["put", str(src), str(kept), "--meta", "k" * 300 + "=1"],  # key too long
                 ["put", str(src), "file://elsewhere/tmp/x"],     # not this host
                 ["export", "--all", "-o", "/proc/lwfm-x.zip"]):
        r = lwfm(home, *args)
        assert r.returncode == 1 and r.stderr.startswith("lwfm: error:"), (args, r.stderr)
        assert "Traceback" not in r.stderr
    assert kept.read_text() == "OLD\n"  # metadata is checked before anything is copied
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "kept.txt", "lwfm-home"]
    assert json.loads(lwfm(home, "find", "--json").stdout) == []


def test_empty_program_is_refused_before_anything_is_recorded(home: Path) -> None:
    r = lwfm(home, "run", "--", "")
    assert r.returncode == 1 and "program (its first word) is empty" in r.stderr
    assert json.loads(lwfm(home, "jobs", "--json").stdout) == []


def test_recorded_file_urls_read_back_with_spaces_and_unicode(home: Path, tmp_path: Path) -> None:
    src = tmp_path / "a.txt"
    src.write_text("data\n")
    put = json.loads(lwfm(home, "put", str(src), str(tmp_path / "x y é.txt"), "--json").stdout)
    assert "%20" in put["url"]  # recorded as a proper file:// URL
    g = lwfm(home, "get", put["url"], str(tmp_path / "back.txt"))
    assert g.returncode == 0, g.stderr
    assert (tmp_path / "back.txt").read_text() == "data\n"


def test_nan_and_infinity_stay_strings_so_json_output_stays_json(home: Path,
                                                                  tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("x\n")
    r = lwfm(home, "put", str(src), str(tmp_path / "out.txt"), "--meta", "a=NaN",
             "--meta", "b=-Infinity", "--meta", "c=1.5", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["metadata"] == {"a": "NaN", "b": "-Infinity", "c": 1.5}
    found = lwfm(home, "find", "a=NaN", "--json").stdout
    assert "NaN" in found and json.loads(found)[0]["metadata"]["a"] == "NaN"  # strict JSON


@pytest.mark.parametrize("args, message", [
    (["status", "00000000-dead"], "no job with id"),
    (["cancel", "nope"], "no job with id"),
    (["log", "nope"], "no job with id"),
    (["run", "--site", "mars", "--", "true"], "unknown site 'mars'"),
    (["find", "not-a-pair"], "is not KEY=VALUE"),
    (["put", "/etc/hostname", "/tmp/x", "--meta", "=v"], "is not KEY=VALUE"),
    (["wait", "nope"], "no job with id"),
])
def test_bad_input_is_a_clear_error_and_nonzero_exit(home: Path, args: list[str],
                                                     message: str) -> None:
    r = lwfm(home, *args)
    assert r.returncode != 0
    assert message in r.stderr
    assert "Traceback" not in r.stderr


def test_sites_lists_configured_sites_and_drivers(home: Path) -> None:
    (home / "lwfm.toml").write_text('[sites.lab]\ndriver = "ssh"\nhost = "lab.example"\n')
    out = json.loads(lwfm(home, "sites", "--json").stdout)
    assert {"name": "lab", "driver": "ssh"} in out["sites"]
    assert {"local", "venv", "ssh"} <= set(out["drivers"])


def test_malformed_config_is_a_clear_error(home: Path) -> None:
    (home / "lwfm.toml").write_text("[sites.lab\n")
    r = lwfm(home, "sites")
    assert r.returncode == 1 and "is not valid TOML" in r.stderr


@pytest.mark.slow
def test_demo_tells_the_whole_story(home: Path) -> None:
    r = lwfm(home, "demo", timeout=600)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "the remote thread joins the local one" in r.stdout
    assert "imported again: added 0" in r.stdout
    q = lwfm(home, "demo", "--quiet", timeout=600)  # a second run in the same home
    assert q.returncode == 0, q.stderr
    summary = json.loads(q.stdout)
    assert summary["joined"] is True and "launch remote lab" in summary["lineage"]


def test_a_foreign_job_id_in_the_environment_is_adopted_only_by_a_write(home: Path,
                                                                       tmp_path: Path) -> None:
    env = {**os.environ, "LWFM_HOME": str(home), "LWFM_JOB_ID": "job-of-another-instance"}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "lwfm.cli", *args], capture_output=True,
                              text=True, timeout=120, env=env)
    for args in (["jobs"], ["find"], ["workflows"], ["triggers"]):
        assert run(*args).returncode == 0
    assert json.loads(lwfm(home, "jobs", "--json").stdout) == []  # reading recorded nothing
    src = tmp_path / "a.txt"
    src.write_text("x\n")
    put = run("put", str(src), str(tmp_path / "b.txt"), "--json")
    assert put.returncode == 0, put.stderr
    assert json.loads(put.stdout)["job_id"] == "job-of-another-instance"
    assert [j["id"] for j in json.loads(lwfm(home, "jobs", "--json").stdout)] == [
        "job-of-another-instance"]


@pytest.mark.parametrize("toml, message", [
    ("store = 3\n", "[store] must be a table"),
    ("[store]\nurl = 5\n", "[store] must be a table"),
    ('[store]\nurl = "nosuchdb://bob:hunter2@db/x"\n', "cannot use store URL"),
    ("[sites.local]\ncompute_types = 5\n", "compute_types must be a list"),
    ('[sites.local]\ndetach = "false"\n', "detach must be true or false"),
])
def test_a_mistyped_config_is_a_clear_error(home: Path, toml: str, message: str) -> None:
    (home / "lwfm.toml").write_text(toml)
    r = lwfm(home, "run", "--", "true")
    assert r.returncode == 1 and message in r.stderr and "Traceback" not in r.stderr
    assert "hunter2" not in r.stderr  # a password in the URL is not echoed


def test_a_triggers_job_is_addressable_before_it_runs(home: Path) -> None:
    """`lwfm triggers` shows the id of the job a trigger will start: status, log, cancel
    and wait take it (or its prefix, in either case) before the job exists."""
    from lwfm import JobDefn, Manager
    with Manager(home) as m:
        a = m.submit(JobDefn(entry="sleep 30", kind="shell"))
        tr = m.on(a.id, JobDefn(entry=["echo", "B"]))
    short = tr.job_id[:8].upper()
    st = lwfm(home, "status", short)
    assert st.returncode == 0 and f"not started: trigger {tr.trigger_id} is pending" in st.stdout
    assert json.loads(lwfm(home, "status", short, "--json").stdout)["trigger"]["id"] == tr.trigger_id
    log = lwfm(home, "log", short)
    assert log.returncode == 1 and "its trigger has not fired" in log.stderr
    w = lwfm(home, "wait", short, "--timeout", "0.2")
    assert w.returncode == 1 and "waiting for its trigger" in w.stderr
    c = lwfm(home, "cancel", short)
    assert c.returncode == 0 and c.stdout.strip() == f"{tr.job_id} cancelled", c.stderr
    w = lwfm(home, "wait", short)
    assert w.returncode == 1 and "will never run" in w.stderr and "cancelled by user" in w.stderr
    assert "cancelled by user" in lwfm(home, "status", short).stdout
    assert lwfm(home, "cancel", a.id).returncode == 0


def test_filters_and_limits_that_cannot_match_are_errors(home: Path) -> None:
    for args, msg in ((["jobs", "--workflow", "nosuch"], "no workflow with id or name 'nosuch'"),
                      (["wait", "abc", "--timeout", "-1"], "Invalid value for '--timeout'"),
                      (["jobs", "--limit", "-3"], "Invalid value for '--limit'")):
        r = lwfm(home, *args)
        assert r.returncode != 0 and msg in r.stderr and "Traceback" not in r.stderr, args


def test_ctrl_c_on_a_waiting_command_exits_130(home: Path) -> None:
    """The shell's convention for an interrupted command; the job itself runs on."""
    job_id = lwfm(home, "run", "--shell", "sleep 30").stdout.strip()
    p = subprocess.Popen([sys.executable, "-m", "lwfm.cli", "wait", job_id], text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env={**os.environ, "LWFM_HOME": str(home)}, preexec_fn=_sigint_default)
    fds = Path(f"/proc/{p.pid}/fd")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # until it has opened the store: inside the command
        try:
            if any(os.readlink(f).endswith("lwfm.db") for f in fds.iterdir()):
                break
        except OSError:
            pass
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 130 and "aborted" in err and "Traceback" not in err
    assert json.loads(lwfm(home, "status", job_id, "--json").stdout)["state"] == "RUNNING"
    assert lwfm(home, "cancel", job_id).returncode == 0


# Rich markup, an escaped bracket, a link, backslashes and an emoji code: user text that a
# table renderer must show as it is, never interpret (issue 10, item 6).
NASTY = r"[/] [bold]b[/bold] [link=http://x.example]l[/link] \[esc] C:\dir\ :thumbs_up: end\\"


def test_user_text_with_rich_markup_is_shown_verbatim_by_every_listing(home: Path,
                                                                      tmp_path: Path) -> None:
    from lwfm import JobDefn, Manager
    r = lwfm(home, "run", "--wait", "--shell", "echo a/b | sed 's/[/]/_/g'")  # the report
    assert r.returncode == 0, r.stderr
    with Manager(home) as m:
        wf = m.create_workflow(NASTY, description=NASTY)
        m.on_data({"note": "[/]*"}, JobDefn(entry=["true"], name=NASTY))
    r = lwfm(home, "run", "--wait", "--json", "--workflow", wf.id, "--name", NASTY, "--",
             sys.executable, "-c", "import sys; print(sys.argv[1])", NASTY)
    assert r.returncode == 0, r.stderr
    job_id = json.loads(r.stdout)["id"]
    with Manager(home) as m:
        m.record_log(NASTY, job_id=job_id, workflow_id=wf.id)
    src = tmp_path / "in.txt"
    src.write_text("x\n")
    r = lwfm(home, "put", str(src), str(tmp_path / "[bold]out[/].txt"), "--job", job_id,
             "--meta", f"label={NASTY}")
    assert r.returncode == 0, r.stderr
    shown_meta = json.dumps(NASTY)[1:-1]   # find shows metadata as JSON
    for args, text in ((["jobs"], NASTY), (["jobs", "--workflow", wf.id[:8]], NASTY),
                       (["jobs"], "echo a/b | sed 's/[/]/_/g'"),
                       (["workflows"], NASTY), (["find"], shown_meta),
                       (["triggers"], '{"note": "[/]*"}'),
                       (["lineage", job_id], NASTY), (["lineage", job_id, "--down"], NASTY),
                       (["thread", wf.id], NASTY), (["status", job_id], NASTY),
                       (["query", "SELECT ?n WHERE { ?j a lwfm:Job ; schema:name ?n }"], NASTY),
                       (["log", job_id], NASTY)):
        r = lwfm(home, *args)
        assert r.returncode == 0 and "Traceback" not in r.stderr, (args, r.stderr)
        assert text in r.stdout, (args, r.stdout)
    assert f"] {NASTY}" in lwfm(home, "log", job_id).stderr   # the lwfm log line


def test_the_public_api_exports_errors_site_seam_and_manager() -> None:
    """What callers catch and what drivers implement comes from `lwfm` itself; the Manager
    is visible to static tools (a TYPE_CHECKING import) yet loaded lazily at run time."""
    import ast
    import inspect

    import lwfm
    from lwfm import errors, site
    for name in ("LwfmError", "InvalidInput", "NotFound", "ConfigError", "SiteError",
                 "NotSupported", "AuthError", "ChecksumMismatch", "QueryError", "BundleError"):
        assert getattr(lwfm, name) is getattr(errors, name) and name in lwfm.__all__
    for name in ("Site", "SiteHost", "Auth", "Run", "Repo", "Spin"):
        assert getattr(lwfm, name) is getattr(site, name) and name in lwfm.__all__
    assert all(hasattr(lwfm, n) for n in lwfm.__all__)
    tree = ast.parse(inspect.getsource(lwfm))
    guarded = [n for node in tree.body if isinstance(node, ast.If)
               and getattr(node.test, "id", None) == "TYPE_CHECKING"
               for n in node.body if isinstance(n, ast.ImportFrom)]
    assert any(i.module == "manager" and [a.name for a in i.names] == ["Manager"]
               for i in guarded)
    r = subprocess.run([sys.executable, "-c", "import sys, lwfm; assert 'lwfm.manager' not in "
                        "sys.modules; from lwfm import Manager; print(Manager.__module__)"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "lwfm.manager", r.stderr


def test_workflows_are_taken_by_id_prefix_or_name_and_ambiguity_is_an_error(home: Path) -> None:
    """`jobs --workflow`, `thread` and `lineage` take what `status` takes: a unique id prefix
    in any case (and a workflow's name); an ambiguous or unknown one is a clear error."""
    from lwfm import JobDefn, Manager, Workflow
    with Manager(home) as m:
        sweep = m.create_workflow("sweep")
        m.create_workflow("other")
        for i in range(2):  # two workflows share a name and an id prefix
            m.store.add_workflow(Workflow(id=f"abcdef00-0000-4000-8000-00000000000{i}", name="twin"))
        jobs = [m.submit(JobDefn(entry=["true"], name=f"step{i}"), workflow_id=sweep.id)
                for i in range(2)]
        m.wait_all([j.id for j in jobs])
    ids = sorted(j.id for j in jobs)
    for ref in ("sweep", sweep.id, sweep.id[:6].upper()):
        r = lwfm(home, "jobs", "--workflow", ref, "--json")
        assert r.returncode == 0, r.stderr
        assert sorted(j["id"] for j in json.loads(r.stdout)) == ids
        t = lwfm(home, "thread", ref)
        assert t.returncode == 0 and "step0" in t.stdout and "step1" in t.stdout, t.stderr
    lin = lwfm(home, "lineage", jobs[0].id[:8].upper(), "--json")
    assert lin.returncode == 0 and json.loads(lin.stdout)["nodes"][0]["id"] == jobs[0].id
    for ref in ("twin", "ABCDEF"):
        for args in (["jobs", "--workflow", ref], ["thread", ref]):
            r = lwfm(home, *args)
            assert r.returncode == 1 and "is ambiguous" in r.stderr, (args, r.stderr)
            assert "abcdef00-000" in r.stderr and "Traceback" not in r.stderr
    for args in (["jobs", "--workflow", "nosuch"], ["thread", "nosuch"],
                 ["find", "--workflow", "nosuch"]):
        r = lwfm(home, *args)
        assert r.returncode == 1 and "no workflow with id or name 'nosuch'" in r.stderr, r.stderr
    (home / "f.txt").write_text("x\n")
    with Manager(home) as m:
        d = m.put(str(home / "f.txt"), str(home / "g.txt"), job_id=jobs[0].id)
    for args in (["--workflow", "sweep"], ["--job", jobs[0].id[:8].upper()]):
        r = lwfm(home, "find", *args, "--json")
        assert r.returncode == 0 and [x["id"] for x in json.loads(r.stdout)] == [d.id], r.stderr


LOADED = """
import sys
from lwfm.cli import cli
try:
    cli.main(sys.argv[1:], standalone_mode=False)
finally:
    heavy = ("sqlalchemy", "rich", "rdflib", "pyoxigraph", "paramiko", "orjson", "lwfm.manager")
    print(sorted(m for m in heavy if m in sys.modules), file=sys.stderr)
"""


def loaded(home: Path, *args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run the CLI in a fresh process; also which heavy modules it imported."""
    r = subprocess.run([sys.executable, "-c", LOADED, *args], capture_output=True, text=True,
                       timeout=120, env={**os.environ, "LWFM_HOME": str(home)})
    return r, json.loads(r.stderr.strip().splitlines()[-1].replace("'", '"'))


def test_listing_ended_jobs_takes_the_light_path_and_agrees_with_the_manager(home: Path) -> None:
    """`lwfm jobs` on ended jobs reads SQLite directly (no SQLAlchemy, no Manager) and
    gives exactly what the Manager path gives; a job still going takes the Manager path."""
    from lwfm import JobDefn, Manager
    from lwfm.cli._lite import light_jobs
    from lwfm.cli.core import job_dict
    with Manager(home) as m:
        wf = m.create_workflow("w")
        a = m.submit(JobDefn(entry=["true"], name="a"), workflow_id=wf.id)
        b = m.on(a.id, JobDefn(entry="exit 3", kind="shell", name="b"))
        c = m.submit(JobDefn(entry=["sleep", "30"], name="c"))
        m.cancel(c.id)
        m.wait_all([a.id, b.job_id, c.id])
    for kw in ({}, {"state": "FAILED"}, {"site": "local", "limit": 2}, {"workflow": "w"},
               {"site": "mars"}):
        with Manager(home) as m:
            want = [job_dict(j) for j in m.store.find_jobs(
                workflow_id=wf.id if "workflow" in kw else None,
                **{k: v for k, v in kw.items() if k != "workflow"})]
        got = light_jobs(str(home), kw.get("workflow"), kw.get("site"), kw.get("state"),
                         kw.get("limit"))
        assert got == want and (want or kw == {"site": "mars"}), kw
    from lwfm.cli._lite import light_status
    with Manager(home) as m:
        for j in m.store.find_jobs():
            d, hist = light_status(str(home), j.id[:8].upper(), True)
            assert d == job_dict(j) and hist == m.history(j.id)
    assert light_status(str(home), "", False) is None
    assert light_status(str(home), "nosuch", False) is None   # the Manager path says why
    r, heavy = loaded(home, "jobs", "--json")
    assert r.returncode == 0 and len(json.loads(r.stdout)) == 3, r.stderr
    assert heavy == [], heavy          # neither SQLAlchemy nor rich for --json
    r, heavy = loaded(home, "status", a.id[:8], "--history")
    assert r.returncode == 0 and r.stdout.startswith(f"{a.id}  COMPLETE  a  site=local  exit=0")
    assert heavy == [] and len(r.stdout.splitlines()) == 4, (heavy, r.stdout)
    r, heavy = loaded(home, "jobs", "--limit", "20")
    assert r.returncode == 0 and "sqlalchemy" not in heavy and "lwfm.manager" not in heavy
    r, heavy = loaded(home, "--help")
    assert r.returncode == 0 and heavy == [], heavy
    with Manager(home) as m:
        d = m.submit(JobDefn(entry=["sleep", "30"], name="d"))
    assert light_jobs(str(home), None, None, None, None) is None   # d is still going
    assert light_status(str(home), d.id, False) is None
    r, heavy = loaded(home, "jobs", "--json")
    assert r.returncode == 0 and "lwfm.manager" in heavy
    assert json.loads(r.stdout)[-1]["id"] == d.id
    assert lwfm(home, "cancel", d.id).returncode == 0


@pytest.mark.slow
def test_a_type_checker_sees_the_manager(tmp_path: Path) -> None:
    """mypy (when installed) types `from lwfm import Manager` as the class, not Any: a
    misspelt method is caught."""
    pytest.importorskip("mypy")
    snippet = tmp_path / "snippet.py"
    snippet.write_text("from lwfm import Manager, NotFound, Site\n\n"
                       "def f(m: Manager) -> None:\n    m.submitt\n")
    r = subprocess.run([sys.executable, "-m", "mypy", "--follow-imports=silent",
                        "--cache-dir", str(tmp_path / "cache"),
                        "--no-error-summary", str(snippet)], capture_output=True, text=True,
                       timeout=300, cwd=Path(__file__).resolve().parent.parent)
    assert '"Manager" has no attribute "submitt"' in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("url", ["sqlite:////tmp/a%20b/lwfm.db", "sqlite:////tmp/a b#c/lwfm.db",
                                 "sqlite:///rel.db", "sqlite://", "sqlite:///:memory:",
                                 "sqlite:////x.db?mode=ro", "postgresql+psycopg://u@h/db"])
def test_the_light_path_opens_the_file_sqlalchemy_opens_or_none(url: str) -> None:
    from sqlalchemy.engine import make_url

    from lwfm.cli._lite import sqlite_path
    got = sqlite_path(url)
    if got is not None:  # a URL with options, or no file, is left to the Manager path
        assert str(got) == make_url(url).database
    else:
        assert "?" in url or make_url(url).database in (None, ":memory:") or \
            not url.startswith("sqlite")
