"""The local site under ordinary use that the happy path never tried (issue 10): working
directories, submitters that exit or are killed, many Managers in one process, odd bytes
in what a job runs, and resources the site cannot give. Real processes, real kill -9."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lwfm import JobDefn, Manager, State
from lwfm.errors import InvalidInput, SiteError

from ._keepers import keepers as _keepers

REPO = Path(__file__).resolve().parents[1]


def lwfm(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lwfm.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "LWFM_HOME": str(home)})


def _reapers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "lwfm-local-reaper" and t.is_alive()]


EXIT_RECORDERS = ["keeper", "shell"]


@pytest.fixture(params=EXIT_RECORDERS)
def recorder(request, monkeypatch) -> str:
    """Who writes a job's exit file: the keeper (Linux 6.15+) or, before, the job's shell."""
    if request.param == "shell":
        import lwfm.sites.local as local
        monkeypatch.setattr(local, "_kernel_keeps_exit_status", lambda: False)
    else:
        from lwfm.sites._keeper import kernel_keeps_exit_status
        if not kernel_keeps_exit_status():
            pytest.skip("this kernel keeps no exit status on a pidfd (Linux < 6.15)")
    return request.param


# -- item 1: jobs with a working directory -------------------------------------------------

def test_100_jobs_with_a_cwd_end_with_their_exit_codes_and_the_reaper_lives(home: Path,
                                                                             recorder: str) -> None:
    with Manager(home) as m:
        ids = [m.submit(JobDefn(entry='pwd; exit "$1"', kind="shell", args=[str(i % 3)],
                                cwd="/tmp")).id for i in range(100)]
        jobs = m.wait_all(ids, timeout=120)
        assert [(j.state, j.exit_code) for j in jobs] == [
            (State.COMPLETE if i % 3 == 0 else State.FAILED, i % 3) for i in range(100)]
        assert {m.log(i) for i in ids} == {"/tmp\n"}
        assert _reapers(), "the reaper thread died"


def test_a_rogue_reaper_in_the_process_does_not_lose_jobs(home: Path, recorder: str) -> None:
    """Some library in the process reaps any child (as subprocess's clean-up does): the
    local site's jobs still end with their own exit codes, and its reaper survives."""
    stop = threading.Event()

    def reap_anything() -> None:
        while not stop.is_set():
            try:
                os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.0005)

    rogue = threading.Thread(target=reap_anything, daemon=True)
    with Manager(home) as m:
        rogue.start()
        try:
            ids = [m.submit(JobDefn(entry='sleep 0.2; exit "$1"', kind="shell", args=[str(i % 2)],
                                    cwd="/tmp" if i % 2 else None)).id for i in range(40)]
            jobs = m.wait_all(ids, timeout=120)
        finally:
            stop.set()
            rogue.join()
        assert [j.exit_code for j in jobs] == [i % 2 for i in range(40)]
        assert _reapers()


def test_cli_run_with_a_cwd_succeeds_every_time(home: Path) -> None:
    ids = []
    for _ in range(20):
        r = lwfm(home, "run", "--cwd", "/tmp", "--", "true")
        assert r.returncode == 0, r.stderr
        ids.append(r.stdout.strip())
    with Manager(home) as m:
        assert {j.state for j in m.wait_all(ids, timeout=60)} == {State.COMPLETE}


# -- item 2: a job's end is recorded whoever started it --------------------------------------

_SUBMITTER = """\
import sys, time
from lwfm import JobDefn, Manager
if sys.argv[2] == "shell":  # as on a kernel before 6.15: the job's shell writes its exit file
    import lwfm.sites.local as local
    local._kernel_keeps_exit_status = lambda: False
with Manager() as m:
    ok = m.submit(JobDefn(entry="sleep 1; exit 0", kind="shell", name="ok"))
    bad = m.submit(JobDefn(entry="sleep 1; exit 3", kind="shell", name="bad"))
    then = m.on(ok.id, JobDefn(entry=["echo", "B"], name="then"))
    m.flush()
    print(ok.id, bad.id, then.job_id, flush=True)
    if sys.argv[1] == "hang":
        time.sleep(120)   # killed -9 in here
"""


def _submitter(home: Path, mode: str, recorder: str) -> tuple[subprocess.Popen, list[str]]:
    p = subprocess.Popen([sys.executable, "-c", _SUBMITTER, mode, recorder], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "LWFM_HOME": str(home)})
    line = p.stdout.readline()  # type: ignore[union-attr]
    assert line, p.communicate(timeout=30)[1]
    return p, line.split()


def _ends_are_true(home: Path, ok: str, bad: str, then: str) -> None:
    w = lwfm(home, "wait", then, "--timeout", "60")
    assert w.returncode == 0 and "COMPLETE" in w.stdout, w.stdout + w.stderr
    st = json.loads(lwfm(home, "status", bad, "--json").stdout)
    assert (st["state"], st["exit_code"]) == ("FAILED", 3)
    with Manager(home) as m:
        assert (m.wait(ok, timeout=60).state, m.status(ok).exit_code) == (State.COMPLETE, 0)
        assert m.log(then) == "B\n"


def test_a_job_whose_submitter_left_its_with_block_records_its_true_end(home: Path,
                                                                        recorder: str) -> None:
    p, (ok, bad, then) = _submitter(home, "exit", recorder)
    assert p.wait(timeout=60) == 0, p.stderr.read()  # type: ignore[union-attr]
    _ends_are_true(home, ok, bad, then)


def test_a_job_whose_submitter_was_killed_records_its_true_end(home: Path, recorder: str) -> None:
    p, (ok, bad, then) = _submitter(home, "hang", recorder)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    _ends_are_true(home, ok, bad, then)


_NEVER_CLOSED = """\
import sys
from lwfm import JobDefn, Manager
m = Manager()   # never closed: the script just ends, right after its submit
print(m.submit(JobDefn(entry="sleep 1; exit 4", kind="shell")).id, flush=True)
"""


def test_a_job_submitted_just_before_a_script_ends_without_closing_records_its_true_end(
        home: Path) -> None:
    """The keeper gets each job's pidfd within a few ms, in batches: a script that ends at
    once after its submit, never closing its Manager, still hands the last batch over (at
    exit), so the job's true exit code is recorded, not a lost one."""
    r = subprocess.run([sys.executable, "-c", _NEVER_CLOSED], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "LWFM_HOME": str(home)})
    assert r.returncode == 0, r.stderr
    job = r.stdout.strip()
    with Manager(home) as m:
        j = m.wait(job, timeout=60)
        assert (j.state, j.exit_code) == (State.FAILED, 4), m.history(job)


def test_a_job_left_running_by_a_closed_manager_ends_complete_in_the_same_process(
        home: Path, recorder: str) -> None:
    with Manager(home) as m:
        ok = m.submit(JobDefn(entry="sleep 0.5; exit 0", kind="shell")).id
    with Manager(home) as m2:
        j = m2.wait(ok, timeout=60)
        assert (j.state, j.exit_code) == (State.COMPLETE, 0)


# -- item 9: a Manager's local site leaves nothing behind ------------------------------------

def _fds() -> int:
    gc.collect()  # a closed store's SQLite connections may wait in reference cycles
    return len(os.listdir("/proc/self/fd"))


def test_closing_managers_leaves_no_reaper_thread_and_no_fd(home: Path) -> None:
    def one() -> None:
        with Manager(home) as m:
            assert m.wait(m.submit(JobDefn(entry=["true"])).id, timeout=60).state is State.COMPLETE
            assert len(_keepers(home)) >= 1
    one()  # warm up: imports, the store's schema
    before = _fds()
    for _ in range(50):
        one()
    assert _reapers() == []
    assert _fds() <= before
    deadline = time.monotonic() + 10
    while _keepers(home) and time.monotonic() < deadline:  # each ends once its jobs have
        time.sleep(0.05)
    assert _keepers(home) == []


# -- item 4: what runs is what is recorded: odd text is refused before anything happens -----

CAFE = b"caf\xe9"   # Latin-1, not UTF-8: Python sees 'caf\udce9'


def _nothing_recorded(home: Path) -> None:
    with Manager(home) as m:
        assert m.store.find_jobs() == [] and m.find() == [] and m.store.triggers() == []


def test_cli_refuses_a_non_utf8_argument_before_running_it(home: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    r = subprocess.run([sys.executable, "-m", "lwfm.cli", "run", "--wait", "--shell", "--",
                        b'touch "' + os.fsencode(marker) + b'" # ' + CAFE],
                       capture_output=True, env={**os.environ, "LWFM_HOME": str(home)}, timeout=60)
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 1 and "is not UTF-8 text" in err and "caf\\xe9" in err, err
    assert "Traceback" not in err
    assert not marker.exists()
    _nothing_recorded(home)


def test_cli_refuses_a_non_utf8_cwd(home: Path, tmp_path: Path) -> None:
    odd = os.fsencode(tmp_path) + b"/" + CAFE
    os.mkdir(odd)
    r = subprocess.run([sys.executable, "-m", "lwfm.cli", "run", "--cwd", odd, "--", "true"],
                       capture_output=True, env={**os.environ, "LWFM_HOME": str(home)}, timeout=60)
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 1 and "the job's cwd" in err and "not UTF-8" in err, err
    _nothing_recorded(home)


def test_cli_put_and_get_refuse_non_utf8_file_names(home: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("x\n")
    dest = os.fsencode(tmp_path) + b"/" + CAFE + b".txt"
    env = {**os.environ, "LWFM_HOME": str(home)}
    r = subprocess.run([sys.executable, "-m", "lwfm.cli", "put", os.fsencode(src), dest],
                       capture_output=True, env=env, timeout=60)
    assert r.returncode == 1 and b"not UTF-8" in r.stderr and b"Traceback" not in r.stderr
    assert not os.path.exists(dest)
    odd_src = os.fsencode(tmp_path) + b"/" + CAFE
    with open(odd_src, "wb") as f:
        f.write(b"y\n")
    url = (tmp_path / "caf").as_uri() + "%E9"
    g = subprocess.run([sys.executable, "-m", "lwfm.cli", "get", url, str(tmp_path / "back")],
                       capture_output=True, env=env, timeout=60)
    assert g.returncode == 1 and b"not UTF-8" in g.stderr and b"Traceback" not in g.stderr
    assert not (tmp_path / "back").exists()
    _nothing_recorded(home)


@pytest.mark.parametrize("defn, field", [
    (dict(entry=["echo", "a\0b"]), "argv[1]"),
    (dict(entry=["echo"], args=["caf\udce9"]), "args[0]"),
    (dict(entry="echo caf\udce9", kind="shell"), "entry"),
    (dict(entry=["true"], env={"A=B": "c"}), "env name 'A=B'"),
    (dict(entry=["true"], env={"A": "x\0y"}), "env value of A"),
    (dict(entry=["true"], env={"caf\udce9": "x"}), "env name"),
    (dict(entry=["true"], cwd="/tmp/caf\udce9"), "cwd"),
    (dict(entry=["true"], name="n\0"), "name"),
    (dict(entry=["true"], resources={"k": ["a\0"]}), "resources"),
])
def test_python_api_refuses_odd_text_naming_the_field(home: Path, tmp_path: Path, defn: dict,
                                                      field: str) -> None:
    with Manager(home) as m:
        with pytest.raises(InvalidInput, match=r"the job's " + field.replace("[", r"\[")):
            m.submit(JobDefn(**defn))
        first = m.submit(JobDefn(entry=["true"]))
        with pytest.raises(InvalidInput, match=r"the job's " + field.replace("[", r"\[")):
            m.on(first.id, JobDefn(**defn))
        m.wait(first.id, timeout=60)
        assert [j.id for j in m.store.find_jobs()] == [first.id] and m.store.triggers() == []


def test_python_put_refuses_odd_paths_before_copying(home: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("x\n")
    with Manager(home) as m:
        with pytest.raises(InvalidInput, match="not UTF-8"):
            m.put(src, str(tmp_path / "caf\udce9.txt"))
        with pytest.raises(InvalidInput, match="NUL"):
            m.put(str(src) + "\0", str(tmp_path / "out.txt"))
        with pytest.raises(InvalidInput, match="NUL"):
            m.get((tmp_path / "in.txt").as_uri() + "%00", tmp_path / "back.txt")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "lwfm-home"]
        assert m.find() == []


# -- item 14: resources and compute types the local site cannot honour -------------------------

def test_local_site_refuses_resources_and_unknown_compute_types(home: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with Manager(home) as m:
        with pytest.raises(SiteError, match="cannot honour resource 'gpus'"):
            m.submit(JobDefn(entry=["touch", str(marker)], resources={"gpus": 1}))
        with pytest.raises(SiteError, match="no compute type 'gpu'"):
            m.submit(JobDefn(entry=["touch", str(marker)], compute_type="gpu"))
        assert not marker.exists() and m.store.find_jobs() == []  # refused before any record
        a = m.submit(JobDefn(entry=["true"]))
        with pytest.raises(SiteError, match="cannot honour resource 'gpus'"):  # not when it fires
            m.on(a.id, JobDefn(entry=["touch", str(marker)], resources={"gpus": 1}))
        assert m.store.triggers() == []
        ok = m.wait(m.submit(JobDefn(entry=["touch", str(marker)], compute_type="default")).id, 60)
        assert ok.state is State.COMPLETE and marker.exists()


def test_local_site_honours_its_configured_compute_types(home: Path) -> None:
    (home / "lwfm.toml").write_text('[sites.local]\ncompute_types = ["small", "big"]\n')
    with Manager(home) as m:
        assert m.wait(m.submit(JobDefn(entry=["true"], compute_type="big")).id, 60).state is State.COMPLETE
        with pytest.raises(SiteError, match=r"no compute type 'default' \(it has: small, big\)"):
            m.submit(JobDefn(entry=["true"], compute_type="default"))


_FD_LIMIT = """
import os, resource, sys
from lwfm import JobDefn, Manager
from lwfm.errors import SiteError
m = Manager(sys.argv[1])
m.wait(m.submit(JobDefn(entry=["true"])).id, timeout=60)   # store, reaper and keeper open
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 6, hard))
started, refused = [], None
for _ in range(40):
    try:
        started.append(m.submit(JobDefn(entry=["sleep", "30"])).id)
    except SiteError as e:
        refused = str(e)
        break
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
def child_sleep(p):
    try:  # (another process may end while it is read)
        return (open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1] == str(os.getpid())
                and "sleep" in open(f"/proc/{p}/comm").read())
    except OSError:
        return False
mine = [p for p in os.listdir("/proc") if p.isdigit() and child_sleep(p)]
print(len(started), len(mine), refused)
for j in started:
    m.cancel(j)
m.close()
"""


def test_out_of_fds_a_job_that_cannot_be_watched_is_stopped_and_refused(home: Path) -> None:
    """Each running local job holds one pidfd. When none can be opened (the open-files
    limit), the job just spawned is stopped and the submit refused with what to do: no
    orphan runs on that nobody could reap, recorded FAILED."""
    r = subprocess.run([sys.executable, "-c", _FD_LIMIT, str(home)], capture_output=True,
                       text=True, timeout=120, env={**os.environ, "LWFM_HOME": str(home)})
    assert r.returncode == 0, r.stderr
    n_started, n_running, refused = r.stdout.split(maxsplit=2)
    assert "ulimit -n" in refused, r.stdout
    assert int(n_running) == int(n_started), r.stdout  # the refused one is not running
