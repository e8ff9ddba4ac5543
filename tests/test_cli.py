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


def test_interrupting_run_wait_leaves_the_job_running_and_recorded(home: Path) -> None:
    """Ctrl-C stops the waiting, not the job; the job still records how it ended."""
    p = subprocess.Popen([sys.executable, "-m", "lwfm.cli", "run", "--wait", "--shell", "--",
                          "sleep 6; exit 0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env={**os.environ, "LWFM_HOME": str(home)})
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
    assert st.returncode == 0 and f"not started: trigger {tr.id} is pending" in st.stdout
    assert json.loads(lwfm(home, "status", short, "--json").stdout)["trigger"]["id"] == tr.id
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
    for args, msg in ((["jobs", "--workflow", "nosuch"], "no workflow with id 'nosuch'"),
                      (["wait", "abc", "--timeout", "-1"], "Invalid value for '--timeout'"),
                      (["jobs", "--limit", "-3"], "Invalid value for '--limit'")):
        r = lwfm(home, *args)
        assert r.returncode != 0 and msg in r.stderr and "Traceback" not in r.stderr, args


def test_ctrl_c_on_a_waiting_command_exits_130(home: Path) -> None:
    """The shell's convention for an interrupted command; the job itself runs on."""
    job_id = lwfm(home, "run", "--shell", "sleep 30").stdout.strip()
    p = subprocess.Popen([sys.executable, "-m", "lwfm.cli", "wait", job_id], text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env={**os.environ, "LWFM_HOME": str(home)})
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
