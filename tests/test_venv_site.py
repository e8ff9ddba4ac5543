"""The venv site with real virtualenvs built from PyPI, real workers and real job processes.

Built venvs are cached in one session-scoped directory so each requirement set is
built once per test run. six is the library under test: small, pure Python, and the
two sites pin versions different from each other (and from the host's, if it has one).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

from lwfm.errors import LwfmError, NotSupported, SiteError
from lwfm.model import JobContext, JobDefn, JobStatus, State
from lwfm.site import SiteHost
from lwfm.sites import _venv_build as build
from lwfm.sites.venv import VenvSite

pytestmark = pytest.mark.slow

OLD, NEW = "six==1.15.0", "six==1.16.0"
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "venv_job"

JOB_MODULE = '''
import os, sys, json
import six

def record(path):
    """Write what this job saw, so the test can check it ran in the venv."""
    with open(path, "w") as f:
        json.dump({"six": six.__version__, "prefix": sys.prefix, "ppid": os.getppid(),
                   "job": os.environ.get("LWFM_JOB_ID")}, f)

def boom():
    raise RuntimeError("this job fails on purpose")
'''

DRIVER_MODULE = '''
import sys
import six

class Driver:
    def __init__(self, greeting="hello"):
        self.greeting = greeting
        self.calls = 0

    def info(self, who):
        self.calls += 1
        return {"greeting": self.greeting + " " + who, "six": six.__version__,
                "prefix": sys.prefix, "calls": self.calls}

    def _private(self):
        return "never"

    def opaque(self):
        return object()
'''


class Collector:
    """SiteHost.report target: statuses arrive on the worker's reader thread."""

    def __init__(self) -> None:
        self.statuses: list[JobStatus] = []
        self.cond = threading.Condition()

    def __call__(self, st: JobStatus) -> None:
        with self.cond:
            self.statuses.append(st)
            self.cond.notify_all()

    def terminal(self, job_id: str, timeout: float = 30) -> JobStatus:
        with self.cond:
            ok = self.cond.wait_for(lambda: any(s.job_id == job_id and s.state.terminal
                                                for s in self.statuses), timeout)
        assert ok, f"no terminal status for {job_id} in {timeout}s: {self.statuses}"
        return next(s for s in self.statuses if s.job_id == job_id and s.state.terminal)


@pytest.fixture(scope="session")
def venv_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("venv-cache")


@pytest.fixture
def code_dir(tmp_path: Path) -> Path:
    d = tmp_path / "code"
    d.mkdir()
    (d / "sixjob.py").write_text(JOB_MODULE)
    (d / "sixdriver.py").write_text(DRIVER_MODULE)
    return d


@pytest.fixture
def make_site(home: Path, venv_cache: Path, code_dir: Path):
    """Build a VenvSite on a cached venv; closes every site at the end of the test."""
    made: list[VenvSite] = []

    def make(name: str, requirements: list[str], venv: str | None = None, **cfg) -> tuple[VenvSite, Collector]:
        col = Collector()
        config = {"driver": "venv", "requirements": requirements,
                  "venv_dir": str(venv_cache / (venv or name)), "pythonpath": [str(code_dir)], **cfg}
        site = VenvSite(SiteHost(name, home, config, report=col))
        made.append(site)
        return site, col

    yield make
    for s in made:
        s.close()


def host_six() -> str | None:
    try:
        return version("six")
    except PackageNotFoundError:
        return None


def submit(site: VenvSite, defn: JobDefn) -> JobContext:
    ctx = JobContext(site=site.name)
    st = site.run.submit(defn, ctx)
    assert st.state is State.RUNNING and ctx.native_id and ":" in ctx.native_id
    return ctx


def test_two_sites_hold_incompatible_versions_side_by_side(make_site, tmp_path: Path):
    old, old_col = make_site("old", [OLD])
    new, new_col = make_site("new", [NEW])
    # the driver's own calls run in each venv
    p_old, p_new = old.ping("six"), new.ping("six")
    assert p_old["distributions"] == {"six": "1.15.0"}
    assert p_new["distributions"] == {"six": "1.16.0"}
    assert Path(p_old["prefix"]) == old.venv_dir and Path(p_new["prefix"]) == new.venv_dir
    assert host_six() not in ("1.15.0", "1.16.0")
    # and so do their jobs, at the same time
    out_old, out_new = tmp_path / "old.json", tmp_path / "new.json"
    c_old = submit(old, JobDefn(entry="sixjob:record", kind="python", args=[str(out_old)]))
    c_new = submit(new, JobDefn(entry="sixjob:record", kind="python", args=[str(out_new)]))
    assert old_col.terminal(c_old.job_id).state is State.COMPLETE
    assert new_col.terminal(c_new.job_id).state is State.COMPLETE
    rec_old, rec_new = json.loads(out_old.read_text()), json.loads(out_new.read_text())
    assert rec_old["six"] == "1.15.0" and rec_new["six"] == "1.16.0"
    assert Path(rec_old["prefix"]) == old.venv_dir
    assert rec_old["job"] == c_old.job_id
    # jobs are children of the long-lived worker, not of a fresh interpreter
    assert rec_old["ppid"] == p_old["pid"] and rec_new["ppid"] == p_new["pid"]


def test_venv_is_built_once_and_reused(make_site):
    first, _ = make_site("old", [OLD])
    first.ensure()
    marker = first.venv_dir / build.MARKER
    mtime = marker.stat().st_mtime_ns
    second, _ = make_site("old", [OLD])
    assert second.ensure() is False
    second.ping()
    assert marker.stat().st_mtime_ns == mtime
    assert json.loads(marker.read_text())["requirements"] == [OLD]


def test_changed_requirements_rebuild(make_site, venv_cache: Path):
    bare, _ = make_site("bare", [], venv="changing")
    bare.ensure()
    assert bare.ping("six")["distributions"] == {"six": None}
    bare.close()
    pinned, _ = make_site("bare", [NEW], venv="changing")
    assert pinned.ensure() is True
    assert pinned.ping("six")["distributions"] == {"six": "1.16.0"}


def test_driver_calls_reuse_one_worker(make_site):
    site, col = make_site("old", [OLD])
    pids = {site.ping()["pid"] for _ in range(20)}
    assert len(pids) == 1
    t0 = time.monotonic()
    for _ in range(50):
        site.ping()
    # no interpreter start per call: 50 round trips take far less than 50 starts would
    assert time.monotonic() - t0 < 2.0
    ctx = submit(site, JobDefn(entry=["true"]))
    col.terminal(ctx.job_id)
    assert site.ping()["pid"] == pids.pop() == site.existing_worker().pid


def test_failing_jobs_fail_with_their_exit_code(make_site):
    site, col = make_site("old", [OLD])
    ctx = submit(site, JobDefn(entry=["python", "-c", "import sys; sys.exit(7)"]))
    st = col.terminal(ctx.job_id)
    assert (st.state, st.exit_code) == (State.FAILED, 7)
    ctx2 = submit(site, JobDefn(entry="sixjob:boom", kind="python"))
    st2 = col.terminal(ctx2.job_id)
    assert (st2.state, st2.exit_code) == (State.FAILED, 1)
    assert "this job fails on purpose" in site.run.log(ctx2)
    ctx3 = submit(site, JobDefn(entry="echo out; echo err >&2; exit 0", kind="shell"))
    assert col.terminal(ctx3.job_id).state is State.COMPLETE
    assert site.run.log(ctx3) == "out\nerr\n"
    # another process, with no worker events, learns the same from the exit file
    other, _ = make_site("old", [OLD])
    st_other = other.run.status(ctx)
    assert (st_other.state, st_other.exit_code) == (State.FAILED, 7)
    assert other.existing_worker() is None


def test_resources_are_enforced_or_refused(make_site):
    """JobDefn.resources: the process limits bind the job (its own rlimits, in the pid
    the worker spawned); a key the site cannot honour is refused at submit, by name."""
    site, col = make_site("old", [OLD])
    ctx = submit(site, JobDefn(entry="ulimit -t; ulimit -n; ulimit -v", kind="shell",
                               resources={"cpu_seconds": 7, "open_files": 64, "memory_mb": 512}))
    assert col.terminal(ctx.job_id).state is State.COMPLETE, site.run.log(ctx)
    assert site.run.log(ctx).split() == ["7", "64", str(512 * 1024)]
    busy = submit(site, JobDefn(entry="while :; do :; done", kind="shell",
                                resources={"cpu_seconds": 1}))
    st = col.terminal(busy.job_id, timeout=60)
    assert (st.state, st.exit_code) == (State.FAILED, -signal.SIGXCPU)
    py = submit(site, JobDefn(entry="sixjob:record", kind="python", args=["/dev/null"],
                              resources={"open_files": 32}))
    assert col.terminal(py.job_id).state is State.COMPLETE, site.run.log(py)
    for resources, match in (({"gpus": 1}, "cannot honour resource 'gpus'"),
                             ({"cpu_seconds": "1h"}, "must be a positive whole number")):
        refused = JobContext(site=site.name)
        with pytest.raises(LwfmError, match=match):
            site.run.submit(JobDefn(entry=["true"], resources=resources), refused)
        assert refused.native_id is None


def _group_members(pgid: int) -> list[str]:
    """'pid state comm' of every process in group ``pgid`` (for failure messages)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            rest = stat[stat.rfind(")") + 2:].split()
            if int(rest[2]) == pgid:
                out.append(f"{d.name} {rest[0]} {stat[stat.find('(') + 1:stat.rfind(')')]}")
    return out


def _group_gone(pgid: int, timeout: float = 20) -> bool:
    """Whether every process of the group has ended and been reaped (zombies count as alive)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    raise AssertionError(f"process group {pgid} still has {_group_members(pgid)}")


def test_cancel_kills_the_process_group(make_site):
    site, col = make_site("old", [OLD])
    ctx = submit(site, JobDefn(entry="sleep 60 & sleep 60; wait", kind="shell"))
    assert site.run.status(ctx).state is State.RUNNING
    assert site.run.cancel(ctx) is True
    st = col.terminal(ctx.job_id, timeout=15)
    assert st.state is State.CANCELLED
    assert _group_gone(int(ctx.native_id.split(":")[0]))
    assert site.run.cancel(ctx) is False


def test_cancel_and_status_from_another_process(make_site, home: Path):
    site, col = make_site("old", [OLD])
    ctx = submit(site, JobDefn(entry=["sleep", "60"]))
    # a separate host process: builds its own VenvSite, never starts a worker
    script = (
        "import sys\nfrom pathlib import Path\nfrom lwfm.site import SiteHost\n"
        "from lwfm.model import JobContext\nfrom lwfm.sites.venv import VenvSite\n"
        "s = VenvSite(SiteHost('old', Path(sys.argv[1]), {'requirements': []}))\n"
        "ctx = JobContext(job_id=sys.argv[2], native_id=sys.argv[3], site='old')\n"
        "print(s.run.status(ctx).state.value, s.run.cancel(ctx), s.existing_worker())\n")
    out = subprocess.run([sys.executable, "-c", script, str(home), ctx.job_id, ctx.native_id],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["RUNNING", "True", "None"]
    assert col.terminal(ctx.job_id, timeout=15).state is State.CANCELLED
    assert _group_gone(int(ctx.native_id.split(":")[0]))
    other, _ = make_site("old", [OLD])
    assert other.run.status(ctx).state is State.CANCELLED


def test_native_id_guards_against_pid_reuse(make_site):
    site, col = make_site("old", [OLD])
    ctx = submit(site, JobDefn(entry=["sleep", "30"]))
    pid = ctx.native_id.split(":")[0]
    stale = JobContext(job_id=ctx.job_id + "x", native_id=f"{pid}:1", site="old")
    other, _ = make_site("old", [OLD])
    assert other.run.cancel(stale) is False        # wrong start time: not our process
    assert site.run.status(ctx).state is State.RUNNING
    assert site.run.cancel(ctx) is True
    assert col.terminal(ctx.job_id).state is State.CANCELLED


def test_driver_class_methods_run_in_the_venv(make_site):
    site, _ = make_site("old", [OLD], driver_class="sixdriver:Driver",
                        driver_options={"greeting": "hi"})
    r1 = site.call("info", "there")
    r2 = site.call("info", who="again")
    assert r1["greeting"] == "hi there" and r1["six"] == "1.15.0"
    assert Path(r1["prefix"]) == site.venv_dir
    assert (r1["calls"], r2["calls"]) == (1, 2)     # one instance, kept in the worker
    with pytest.raises(SiteError, match="not a public method"):
        site.call("_private")
    with pytest.raises(SiteError, match="no method"):
        site.call("missing")
    with pytest.raises(SiteError, match="not JSON serializable"):
        site.call("opaque")
    assert site.call("info", "still")["calls"] == 3   # errors leave the worker serving
    bare, _ = make_site("new", [NEW])
    with pytest.raises(NotSupported):
        bare.call("info")


def test_build_failure_raises_and_leaves_nothing(make_site):
    site, _ = make_site("broken", ["lwfm-no-such-distribution-zz==0.0.1"])
    with pytest.raises(SiteError) as e:
        site.ensure()
    assert "pip install" in str(e.value) and "lwfm-no-such-distribution-zz" in str(e.value)
    assert not site.venv_dir.exists()
    with pytest.raises(SiteError):      # a job on it fails the same way, clearly
        site.run.submit(JobDefn(entry=["true"]), JobContext(site="broken"))


def test_worker_protocol_survives_bad_requests(tmp_path: Path):
    """The worker is stdlib-only: run it on the host python and speak to it directly."""
    from lwfm.sites._venv_client import WORKER_SCRIPT
    lines = ["not json", json.dumps({"id": 1, "method": "nope"}),
             json.dumps({"id": 2, "method": "spawn", "params": {"argv": []}}),
             json.dumps({"id": 3, "method": "ping", "params": {"distributions": ["pytest"]}}),
             json.dumps({"id": 4, "method": "spawn", "params": {
                 "job": "j1", "argv": ["sh", "-c", "echo hi; exit 3"], "job_dir": str(tmp_path)}})]
    out = subprocess.run([sys.executable, str(WORKER_SCRIPT)], input="\n".join(lines) + "\n",
                         capture_output=True, text=True, timeout=60)
    msgs = [json.loads(x) for x in out.stdout.splitlines()]
    by_id = {m.get("id"): m for m in msgs if "id" in m}
    assert by_id[None]["error"]["type"] == "ProtocolError"
    assert by_id[1]["error"]["type"] == "UnknownMethod"
    assert "error" in by_id[2]
    assert by_id[3]["result"]["distributions"] == {"pytest": version("pytest")}
    assert by_id[4]["result"]["pid"] > 0
    # stdin closed: the worker still waited for its job and recorded how it ended
    assert {"event": "exit", "job": "j1", "code": 3, "cancelled": False} in msgs
    assert (tmp_path / "exit_code").read_text() == "3\n"
    assert (tmp_path / "stdout").read_text() == "hi\n"
    assert out.returncode == 0


def test_bad_config_is_a_clear_error(home: Path):
    from lwfm.errors import ConfigError
    with pytest.raises(ConfigError, match="requirements"):
        VenvSite(SiteHost("x", home, {"requirements": "six"}))
    with pytest.raises(ConfigError, match="driver_class"):
        VenvSite(SiteHost("x", home, {"driver_class": "nocolon"}))
    plain = VenvSite(SiteHost("x", home, {"compute_types": ["cpu"]}))
    with pytest.raises(NotSupported, match="payload"):
        plain.run.submit(JobDefn(entry={"name": "circuit"}, kind="payload"), JobContext(site="x"))
    with pytest.raises(SiteError, match="compute type 'gpu'"):
        plain.run.submit(JobDefn(entry=["true"], compute_type="gpu"), JobContext(site="x"))
    assert not (home / "venvs" / "x").exists()     # refused before any venv was built
    not_a_venv = home / "precious"
    not_a_venv.mkdir()
    (not_a_venv / "data.txt").write_text("keep me")
    s = VenvSite(SiteHost("x", home, {"venv_dir": str(not_a_venv)}))
    with pytest.raises(ConfigError, match="not a virtualenv"):
        s.ensure()
    assert (not_a_venv / "data.txt").read_text() == "keep me"


def test_repo_put_get_checksums(make_site, tmp_path: Path):
    site, _ = make_site("old", [OLD])
    src = tmp_path / "in.txt"
    src.write_bytes(b"abc")
    put = site.repo.put(src, str(tmp_path / "store" / "in.txt"), None)
    assert put.size == 3
    assert put.sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    got = site.repo.get(put.url, tmp_path / "back.txt", None)
    assert got.sha256 == put.sha256 and (tmp_path / "back.txt").read_bytes() == b"abc"


def _write_config(home: Path, venv_cache: Path, code_dir: Path) -> None:
    (home / "lwfm.toml").write_text(
        f'[sites.old]\ndriver = "venv"\nrequirements = ["{OLD}"]\n'
        f'venv_dir = "{venv_cache / "old"}"\npythonpath = ["{code_dir}"]\n')


def test_through_the_manager(home: Path, venv_cache: Path, code_dir: Path, tmp_path: Path):
    from lwfm import Manager
    _write_config(home, venv_cache, code_dir)
    out = tmp_path / "rec.json"
    with Manager(home) as m:
        job = m.submit(JobDefn(entry="sixjob:record", kind="python", site="old", args=[str(out)]))
        done = m.wait(job.id, timeout=120)
        assert (done.state, done.exit_code) == (State.COMPLETE, 0)
        assert json.loads(out.read_text())["six"] == "1.15.0"
        assert [s.state for s in m.history(job.id)][-1] is State.COMPLETE
        bad = m.submit(JobDefn(entry=["python", "-c", "import six, sys; sys.exit(int(six.PY3) + 4)"],
                               site="old"))
        bad_done = m.wait(bad.id, timeout=120)
        assert (bad_done.state, bad_done.exit_code) == (State.FAILED, 5)
        long = m.submit(JobDefn(entry=["sleep", "60"], site="old"))
        assert m.cancel(long.id) is True
        assert m.wait(long.id, timeout=30).state is State.CANCELLED
        assert _group_gone(int(m.status(long.id).context.native_id.split(":")[0]))


def test_trigger_chain_on_the_venv_site(home: Path, venv_cache: Path, code_dir: Path):
    """B is submitted from A's completion event: the worker must keep answering meanwhile."""
    from lwfm import Manager
    _write_config(home, venv_cache, code_dir)
    with Manager(home) as m:
        a = m.submit(JobDefn(entry=["python", "-c", "import six; print(six.__version__)"], site="old"))
        trig = m.on(a.id, JobDefn(entry=["python", "-c", "import six; print(six.__version__)"],
                                  site="old"))
        m.wait(a.id, timeout=60)
        b = m.wait(trig.job_id, timeout=60)
        assert b.state is State.COMPLETE and b.triggered_by is not None
        assert m.log(b.id) == m.log(a.id) == "1.15.0\n"


def test_example_venv_job(tmp_path: Path, home: Path):
    proc = subprocess.run([sys.executable, str(EXAMPLE / "run.py")], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "LWFM_HOME": str(home)})
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["state"] == "COMPLETE"
    assert out["job_six"] == out["driver_six"] == "1.15.0" != out["host_six"]
    assert Path(out["job_prefix"]) == home / "venvs" / "old-six"


def test_concurrent_builds_take_turns(venv_cache: Path, home: Path):
    """Two processes wanting the same new venv: one builds it, the other waits and reuses it."""
    script = (
        "import sys\nfrom pathlib import Path\nfrom lwfm.site import SiteHost\n"
        "from lwfm.sites.venv import VenvSite\n"
        "s = VenvSite(SiteHost('race', Path(sys.argv[1]), {'requirements': [sys.argv[3]],"
        " 'venv_dir': sys.argv[2]}))\nprint(s.ensure())\n")
    venv = venv_cache / "race"
    procs = [subprocess.Popen([sys.executable, "-c", script, str(home), str(venv), NEW],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert sorted(o[0].strip() for o in outs) == ["False", "True"]
    assert json.loads((venv / build.MARKER).read_text())["requirements"] == [NEW]


def test_a_dead_worker_is_replaced(make_site):
    site, col = make_site("old", [OLD])
    first = site.ping()["pid"]
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while site.existing_worker().pid is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    second = site.ping("six")
    assert second["pid"] != first and second["distributions"] == {"six": "1.15.0"}
    ctx = submit(site, JobDefn(entry=["true"]))
    assert col.terminal(ctx.job_id).state is State.COMPLETE


LWFM_JOB = '''
import os
import six
from pathlib import Path
import lwfm
from lwfm import Manager

def notate(path):
    """Inside the venv, with lwfm installed there: record data linked to this job."""
    p = Path(path)
    p.write_text(six.__version__)
    with Manager() as m:
        m.put(p, str(p.with_suffix(".stored")), metadata={
            "six": six.__version__, "by": "venv job", "lwfm": os.path.realpath(lwfm.__file__)})
'''


def test_a_venv_job_with_lwfm_links_its_data(home: Path, venv_cache: Path, code_dir: Path,
                                              tmp_path: Path):
    """lwfm visible in the venv (system_site_packages; listing lwfm's checkout among the
    requirements works too, but costs a minute of dependency installs): the job finds
    its context in its environment and notates data linked to itself, while the venv's
    pinned six still shadows the host's. The job's lwfm is the host's own, also when the
    host is a venv (lwfm installed there, editable or not), not the base interpreter's."""
    from lwfm import Manager
    (code_dir / "lwfmjob.py").write_text(LWFM_JOB)
    (home / "lwfm.toml").write_text(
        f'[sites.withlwfm]\ndriver = "venv"\nrequirements = ["{OLD}"]\n'
        f'system_site_packages = true\n'
        f'venv_dir = "{venv_cache / "withlwfm"}"\npythonpath = ["{code_dir}"]\n')
    with Manager(home) as m:
        # cwd away from the checkout, whose uninstalled lwfm/ would shadow the venv's
        job = m.submit(JobDefn(entry="lwfmjob:notate", kind="python", site="withlwfm",
                               args=[str(tmp_path / "v.txt")], cwd=str(tmp_path)))
        done = m.wait(job.id, timeout=600)
        assert done.state is State.COMPLETE, m.log(job.id)
        found = m.find({"by": "venv job"})
        assert [(d.job_id, d.metadata["six"]) for d in found] == [(job.id, "1.15.0")]
        assert found[0].sha256 is not None
        import lwfm
        assert found[0].metadata["lwfm"] == os.path.realpath(lwfm.__file__)
