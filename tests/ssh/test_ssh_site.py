"""The ssh driver against a real sshd: run, repo, host keys, drops, secrets."""

from __future__ import annotations

import logging
import os
import subprocess
import time
from pathlib import Path

import pytest

from lwfm.errors import AuthError, ChecksumMismatch, ConfigError
from lwfm.model import EntryKind, JobContext, JobDefn, State
from lwfm.site import SiteHost
from lwfm.files import sha256_file
from lwfm.sites.ssh import SSHSite

pytestmark = [pytest.mark.slow, pytest.mark.ssh]


def make_site(srv, tmp_path: Path, **extra) -> SSHSite:
    return SSHSite(SiteHost(name="lab", home=tmp_path / "home", config=srv.site_config(**extra)))


def wait_terminal(site: SSHSite, ctx: JobContext, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = site.run.status(ctx)
        if st.state.terminal:
            return st
        time.sleep(0.1)
    raise AssertionError(f"job {ctx.job_id} not terminal after {timeout} s: {st}")


def test_submit_status_log_env(live_sshd, tmp_path):
    site = make_site(live_sshd, tmp_path)
    ctx = JobContext(workflow_id="wf-1", site="lab")
    defn = JobDefn(entry='echo "id=$LWFM_JOB_ID home=$LWFM_HOME wf=$LWFM_WORKFLOW_ID x=$X"; '
                         'echo oops >&2; pwd', kind=EntryKind.SHELL, env={"X": "it's $quoted"})
    first = site.run.submit(defn, ctx)
    assert first.state is State.RUNNING and ctx.native_id and ctx.native_id.isdigit()
    st = wait_terminal(site, ctx)
    assert st.state is State.COMPLETE and st.exit_code == 0
    log = site.run.log(ctx)
    assert f"id={ctx.job_id} home={live_sshd.remote_home} wf=wf-1 x=it's $quoted" in log
    assert "oops" in log and str(live_sshd.remote_home / "work") in log
    site.close()


def test_failed_exit_code_and_argv_quoting(live_sshd, tmp_path):
    site = make_site(live_sshd, tmp_path)
    ctx = JobContext(site="lab")
    site.run.submit(JobDefn(entry=["/bin/sh", "-c", "echo \"$1\"; exit 3", "x", "a b; rm -rf /"]), ctx)
    st = wait_terminal(site, ctx)
    assert st.state is State.FAILED and st.exit_code == 3
    assert site.run.log(ctx).strip() == "a b; rm -rf /"
    site.close()


def test_cancel_kills_process_group(live_sshd, tmp_path):
    site = make_site(live_sshd, tmp_path)
    ctx = JobContext(site="lab")
    marker = f"lwfm-cancel-{ctx.job_id[:8]}"
    site.run.submit(JobDefn(entry=f"sleep 300 & sleep 301; echo {marker}", kind=EntryKind.SHELL), ctx)
    assert site.run.status(ctx).state is State.RUNNING
    assert site.run.cancel(ctx) is True
    st = site.run.status(ctx)
    assert st.state is State.CANCELLED
    pg = int(ctx.native_id)
    with pytest.raises(ProcessLookupError):   # same machine: the whole group is gone
        for _ in range(50):
            os.killpg(pg, 0)
            time.sleep(0.1)
    assert site.run.cancel(ctx) is False or site.run.status(ctx).state is State.CANCELLED
    site.close()


def test_put_get_roundtrip(live_sshd, tmp_path):
    site = make_site(live_sshd, tmp_path)
    src = tmp_path / "in.bin"
    src.write_bytes(os.urandom(300_000))
    d = site.repo.put(src, "data/in.bin", None)
    remote = live_sshd.remote_home / "work" / "data" / "in.bin"
    assert remote.read_bytes() == src.read_bytes()
    assert d.sha256 == sha256_file(src) and d.size == 300_000 and d.url.endswith(str(remote))
    assert not list(remote.parent.glob("*lwfm-tmp*"))
    back = site.repo.get(d.url, tmp_path / "out" / "copy.bin", None)
    assert (tmp_path / "out" / "copy.bin").read_bytes() == src.read_bytes()
    assert back.sha256 == d.sha256 and back.metadata["copied_from"] == d.url
    assert d.metadata["copied_from"] == src.resolve().as_uri()
    assert site.repo.find("data/*.bin") == [d.url]
    from lwfm.errors import NotFound
    with pytest.raises(NotFound, match="no_such.bin"):
        site.repo.get("data/no_such.bin", tmp_path / "x.bin", None)
    with pytest.raises(NotFound):
        site.repo.put(tmp_path / "missing.bin", "data/m.bin", None)
    site.close()


def test_put_checksum_mismatch_detected(live_sshd, tmp_path):
    site = make_site(live_sshd, tmp_path)
    src = tmp_path / "in.txt"
    src.write_text("hello lab\n")
    site.repo.after_upload = lambda tmp: (Path(tmp).write_text("tampered\n"))  # same machine
    with pytest.raises(ChecksumMismatch, match="corrupt"):
        site.repo.put(src, "bad/in.txt", None)
    bad = live_sshd.remote_home / "work" / "bad"
    assert not (bad / "in.txt").exists() and not list(bad.glob("*"))
    site.close()


def test_get_checksum_mismatch_detected(live_sshd, tmp_path):
    site = make_site(live_sshd, tmp_path)
    remote = live_sshd.remote_home / "work" / "g.txt"
    remote.write_text("original\n")
    dst = tmp_path / "g.txt"
    site.repo.after_download = lambda p: p.write_text("flipped\n")
    with pytest.raises(ChecksumMismatch):
        site.repo.get(str(remote), dst, None)
    assert not dst.exists() and not list(tmp_path.glob(".g.txt*"))
    site.repo.after_download = None
    with pytest.raises(ChecksumMismatch, match="expected"):
        site.repo.get(str(remote), dst, None, expected_sha256="0" * 64)
    assert site.repo.get(str(remote), dst, None).sha256 == sha256_file(remote)
    site.close()


def test_unknown_host_key_refused_then_opt_in(live_sshd, tmp_path):
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    site = make_site(live_sshd, tmp_path, known_hosts=str(kh))
    with pytest.raises(AuthError, match="not in .*trust_new_host_key"):
        site.auth.login()
    assert kh.read_text() == ""
    trusting = make_site(live_sshd, tmp_path, known_hosts=str(kh), trust_new_host_key=True)
    trusting.auth.login()
    assert live_sshd.host_pub in kh.read_text()
    trusting.close()
    strict = make_site(live_sshd, tmp_path, known_hosts=str(kh))   # now known: plain reject policy
    strict.auth.login()
    assert strict.auth.is_current()
    strict.close()
    kh.write_text(f"[{live_sshd.host}]:{live_sshd.port} ssh-ed25519 "
                  "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n")
    with pytest.raises(AuthError, match="CHANGED"):
        make_site(live_sshd, tmp_path, known_hosts=str(kh), trust_new_host_key=True).auth.login()


def test_encrypted_key_passphrase_from_env(live_sshd, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.delenv("LWFM_SSH_live_sshd.passphrase", raising=False)
    site = make_site(live_sshd, tmp_path, key_file=str(live_sshd.enc_key), passphrase_env="LAB_PW")
    with pytest.raises(AuthError, match=r"\$LAB_PW") as e:
        site.auth.login()
    assert live_sshd.passphrase not in str(e.value)
    monkeypatch.setenv("LAB_PW", live_sshd.passphrase)
    site.auth.login()
    ctx = JobContext(site="lab")
    site.run.submit(JobDefn(entry=["true"]), ctx)
    assert wait_terminal(site, ctx).state is State.COMPLETE
    assert live_sshd.passphrase not in caplog.text
    assert live_sshd.passphrase not in repr(site.__dict__) + repr(site.conn.__dict__) + repr(site.conn.cfg)
    site.close()
    with pytest.raises(ConfigError, match="passphrase_env"):
        make_site(live_sshd, tmp_path, passphrase="x")


def test_spin_compute_types(live_sshd, tmp_path):
    site = make_site(live_sshd, tmp_path)
    assert site.spin.compute_types() == ["cpu", "bigmem"]
    from lwfm.errors import SiteError
    with pytest.raises(SiteError, match="no compute type"):
        site.run.submit(JobDefn(entry=["true"], compute_type="gpu"), JobContext(site="lab"))


def test_resources_are_the_jobs_ulimits_or_refused(live_sshd, tmp_path):
    """cpu_seconds, memory_mb, open_files bind the job at the lab (not the wrapper's own
    bookkeeping); any other key is refused at submit, before anything is sent."""
    site = make_site(live_sshd, tmp_path)
    ctx = JobContext(site="lab")
    site.run.submit(JobDefn(entry="ulimit -t; ulimit -n; ulimit -v", kind=EntryKind.SHELL,
                            resources={"cpu_seconds": 7, "open_files": 64, "memory_mb": 512}), ctx)
    st = wait_terminal(site, ctx)
    assert st.state is State.COMPLETE, site.run.log(ctx)
    assert site.run.log(ctx).split() == ["7", "64", str(512 * 1024)]
    busy = JobContext(site="lab")
    site.run.submit(JobDefn(entry="while :; do :; done", kind=EntryKind.SHELL,
                            resources={"cpu_seconds": 1}), busy)
    st = wait_terminal(site, busy, timeout=60)
    assert st.state is State.FAILED and st.exit_code == 128 + 24   # SIGXCPU, as sh reports it
    from lwfm.errors import NotSupported
    refused = JobContext(site="lab")
    connects = site.conn.connects
    with pytest.raises(NotSupported, match="site 'lab' cannot honour resource 'nodes'"):
        site.run.submit(JobDefn(entry=["true"], resources={"nodes": 2}), refused)
    assert refused.native_id is None and site.conn.connects == connects
    site.close()


def test_connection_drop_mid_job(live_sshd, tmp_path):
    site = make_site(live_sshd, tmp_path, reconnect_timeout=30)
    ctx = JobContext(site="lab")
    tag = f"lwfm-drop-{ctx.job_id[:8]}"
    site.run.submit(JobDefn(entry=f"sleep 2; echo {tag}", kind=EntryKind.SHELL), ctx)
    assert site.run.status(ctx).state is State.RUNNING
    assert site.conn.connects == 1
    live_sshd.stop()
    time.sleep(0.5)
    import threading
    t = threading.Timer(1.5, live_sshd.start)
    t.start()
    try:
        st = site.run.status(ctx)         # reconnects (retrying) once sshd is back
    finally:
        t.join()
    assert st.state in (State.RUNNING, State.COMPLETE)
    assert site.conn.connects == 2
    st = wait_terminal(site, ctx)
    assert st.state is State.COMPLETE
    assert site.run.log(ctx).count(tag) == 1          # the job ran exactly once
    # re-sending the same submit (as after a drop mid-submit) does not start a second copy
    pid = ctx.native_id
    again = JobContext(job_id=ctx.job_id, site="lab")
    site.run.submit(JobDefn(entry=f"echo {tag}", kind=EntryKind.SHELL), again)
    assert again.native_id == pid and site.run.log(ctx).count(tag) == 1
    site.close()


def test_lab_runs_in_its_own_network_namespace(live_sshd, tmp_path, record_property):
    record_property("ssh_network_mode", live_sshd.mode)
    if os.environ.get("LWFM_TEST_SSH_LOOPBACK"):
        pytest.skip("loopback mode requested")
    assert live_sshd.mode == "netns", "ip netns is available here; the lab should be a 2nd host"
    assert live_sshd.host.startswith("10.231.")
    assert os.readlink(f"/proc/{live_sshd.proc.pid}/ns/net") != os.readlink("/proc/self/ns/net")
    site = make_site(live_sshd, tmp_path)
    ctx = JobContext(site="lab")
    site.run.submit(JobDefn(entry="readlink /proc/self/ns/net", kind=EntryKind.SHELL), ctx)
    wait_terminal(site, ctx)
    assert site.run.log(ctx).strip() == os.readlink(f"/proc/{live_sshd.proc.pid}/ns/net")
    site.close()


def test_python_entry_runs_with_remote_python(live_sshd, tmp_path):
    site = make_site(live_sshd, tmp_path)
    ctx = JobContext(site="lab")
    site.run.submit(JobDefn(entry="builtins:print", kind=EntryKind.PYTHON, args=["hi", "lab"]), ctx)
    assert wait_terminal(site, ctx).state is State.COMPLETE
    assert site.run.log(ctx).strip() == "hi lab"
    bad = JobContext(site="lab")
    site.run.submit(JobDefn(entry="no_such_module_xyz:f", kind=EntryKind.PYTHON), bad)
    st = wait_terminal(site, bad)
    assert st.state is State.FAILED and "no_such_module_xyz" in site.run.log(bad)
    site.close()


def test_unreachable_host_gives_clear_error(tmp_path):
    from lwfm.errors import SiteError
    cfg = {"host": "127.0.0.1", "port": 1, "user": "x", "known_hosts": str(tmp_path / "kh"),
           "remote_home": "/tmp/x", "reconnect_timeout": 1, "connect_timeout": 1,
           "poll_reconnect_timeout": 2}
    site = SSHSite(SiteHost(name="gone", home=tmp_path, config=cfg))
    with pytest.raises(SiteError, match=r"cannot reach \[127.0.0.1\]:1"):
        site.auth.login()
    t0 = time.monotonic()
    st = site.run.status(JobContext(site="gone"))        # a poll: INFO, not a raise
    assert st.state is State.INFO and "cannot reach" in st.info
    assert time.monotonic() - t0 < 10                    # bounded by poll_reconnect_timeout
    with pytest.raises(ConfigError, match="absolute"):
        SSHSite(SiteHost(name="rel", home=tmp_path, config={**cfg, "remote_home": "lab"}))
    with pytest.raises(ConfigError, match="needs host"):
        SSHSite(SiteHost(name="nohost", home=tmp_path, config={"remote_home": "/x"}))


def test_job_environment_stays_out_of_the_process_list(live_sshd, tmp_path):
    site = make_site(live_sshd, tmp_path)
    ctx = JobContext(site="lab")
    token = "tok-" + ctx.job_id[:8]
    site.run.submit(JobDefn(entry='sleep 2; echo "t=$API_TOKEN"', kind=EntryKind.SHELL,
                            env={"API_TOKEN": token}), ctx)
    listing = subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True, text=True).stdout
    assert ctx.job_id in listing and token not in listing      # the lab's `ps` shows no env
    env_file = live_sshd.remote_home / "jobs" / ctx.job_id / "env"
    assert env_file.stat().st_mode & 0o077 == 0
    assert wait_terminal(site, ctx).state is State.COMPLETE
    assert site.run.log(ctx).strip() == f"t={token}"
    from lwfm.errors import SiteError
    with pytest.raises(SiteError, match="variable name"):
        site.run.submit(JobDefn(entry=["true"], env={"BAD-NAME": "x"}), JobContext(site="lab"))
    with pytest.raises(SiteError, match="job id"):
        site.run.status(JobContext(job_id="../../etc", site="lab"))
    site.close()


def test_agent_authentication(live_sshd, tmp_path, monkeypatch):
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.05)
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run(["ssh-add", str(live_sshd.user_key)], env=env, check=True,
                       capture_output=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        monkeypatch.setenv("HOME", str(tmp_path))          # no default keys to fall back on
        cfg = live_sshd.site_config()
        del cfg["key_file"]
        site = SSHSite(SiteHost(name="lab", home=tmp_path / "home", config=cfg))
        site.auth.login()
        assert site.auth.is_current()
        site.close()
        monkeypatch.setenv("SSH_AUTH_SOCK", str(tmp_path / "no-agent"))
        with pytest.raises(AuthError, match="authentication .* failed"):
            SSHSite(SiteHost(name="lab", home=tmp_path / "home", config=cfg)).auth.login()
    finally:
        agent.terminate()
        agent.wait(timeout=10)
