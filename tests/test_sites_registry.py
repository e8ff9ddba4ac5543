"""Site drivers come from the `lwfm.sites` entry-point group; pillars refuse clearly; the
driver contract the core relies on (pillars, requests a site cannot honour, pull) is public."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lwfm import JobContext, JobDefn, Manager, State
from lwfm.errors import ConfigError, InvalidInput, NotSupported
from lwfm.site import PILLARS, NoAuth, Run, Site, SiteHost, StaticSpin

PLUGIN = textwrap.dedent('''
    """A third-party site driver: the local site under another name, with one compute type."""
    from lwfm.sites.local import LocalSite
    from lwfm.site import StaticSpin

    class EchoSite(LocalSite):
        def __init__(self, host):
            super().__init__(host)
            self.spin = StaticSpin(["tiny"])
''')


REPO_ONLY = textwrap.dedent('''
    """A Repo-only site, as a data service is: files in a directory. It can also hand
    over the thread of an lwfm instance beside it (``lab_home``), for ``lwfm pull``."""
    import hashlib, os, subprocess, sys
    from pathlib import Path
    from lwfm.site import FetchedThread, Site
    from lwfm.sites.local import LocalRepo

    class ShelfSite(Site):
        def __init__(self, host):
            super().__init__(host)
            self.repo = LocalRepo(host)

        def fetch_thread(self, dest, *, workflow_id=None, with_data=False):
            sel = ["--workflow", workflow_id] if workflow_id else ["--all"]
            subprocess.run([sys.executable, "-m", "lwfm.cli", "export", *sel, "--quiet",
                            "-o", str(dest)], check=True, capture_output=True,
                           env={**os.environ, "LWFM_HOME": self.host.config["lab_home"]})
            data = Path(dest).read_bytes()
            return FetchedThread(path=Path(dest), source=self.host.config["lab_home"],
                                 sha256=hashlib.sha256(data).hexdigest(), size=len(data))
''')


def _plugin(tmp: Path, module: str = "thirdparty_site", text: str = PLUGIN,
            entry: str = "echosite = thirdparty_site:EchoSite") -> Path:
    """Install a package the way pip would: its module plus a dist-info with entry points."""
    root = tmp / f"plugin-{module}"
    dist = root / f"{module}-0.1.dist-info"
    dist.mkdir(parents=True)
    (root / f"{module}.py").write_text(text)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[lwfm.sites]\n{entry}\n")
    return root


def _cli_env(home: Path, root: Path) -> dict[str, str]:
    return {**os.environ, "LWFM_HOME": str(home),
            "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}


CLI = [sys.executable, "-m", "lwfm.cli"]


def test_third_party_driver_is_found_and_runs_jobs(home: Path, tmp_path: Path) -> None:
    root = _plugin(tmp_path)
    (home / "lwfm.toml").write_text('[sites.mine]\ndriver = "echosite"\n')
    env = {**os.environ, "LWFM_HOME": str(home),
           "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    cli = [sys.executable, "-m", "lwfm.cli"]
    out = subprocess.run([*cli, "sites", "--json"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    listing = json.loads(out.stdout)
    assert "echosite" in listing["drivers"]
    assert {"name": "mine", "driver": "echosite"} in listing["sites"]
    assert listing["pillars"]["mine"] == ["auth", "run", "repo", "spin"]
    run = subprocess.run([*cli, "run", "--site", "mine", "--wait", "--json", "--", "echo", "plug"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    job = json.loads(run.stdout)
    assert job["site"] == "mine" and job["state"] == "COMPLETE"


def test_unknown_driver_is_a_config_error(home: Path) -> None:
    (home / "lwfm.toml").write_text('[sites.x]\ndriver = "nonesuch"\n')
    with Manager(home) as m, pytest.raises(ConfigError, match="no site driver 'nonesuch'"):
        m.site("x")


def test_local_spin_refuses_provisioning_clearly(home: Path) -> None:
    with Manager(home) as m:
        spin = m.site("local").spin
        assert spin.compute_types() == ["default"]
        with pytest.raises(NotSupported, match="cannot provision"):
            spin.provision("default")
        with pytest.raises(NotSupported, match="cannot deprovision"):
            spin.deprovision("x")


def test_logs_link_to_job_and_workflow(home: Path) -> None:
    with Manager(home) as m:
        wf = m.create_workflow("logs")
        j = m.wait(m.submit(JobDefn(entry=["true"]), workflow_id=wf.id).id, timeout=30)
        assert j.state is State.COMPLETE
        m.record_log("checked the output", job_id=j.id, workflow_id=wf.id)
        (rec,) = m.store.logs(job_id=j.id)
        assert rec.message == "checked the output" and rec.workflow_id == wf.id
        assert [r.message for r in m.store.logs(workflow_id=wf.id)] == ["checked the output"]


# -- a site with only some pillars ---------------------------------------------------------

@pytest.fixture
def shelf(home: Path, tmp_path: Path) -> dict[str, str]:
    """A Repo-only site ``it``, registered through the entry-point group, in a CLI env."""
    root = _plugin(tmp_path, "shelf_site", REPO_ONLY, "shelf = shelf_site:ShelfSite")
    lab = tmp_path / "lab-home"
    lab.mkdir()
    (home / "lwfm.toml").write_text(f'[sites.it]\ndriver = "shelf"\nlab_home = "{lab}"\n')
    return _cli_env(home, root)


def test_sites_shows_the_pillars_each_site_has(shelf: dict[str, str]) -> None:
    out = subprocess.run([*CLI, "sites", "--json"], env=shelf, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    listing = json.loads(out.stdout)
    assert listing["pillars"] == {"it": ["repo"], "local": ["auth", "run", "repo", "spin"]}
    table = subprocess.run([*CLI, "sites"], env=shelf, capture_output=True, text=True, timeout=60)
    assert table.returncode == 0, table.stderr
    row = next(line for line in table.stdout.splitlines() if " it " in line)
    assert "shelf" in row and "repo" in row and "run" not in row


def test_run_on_a_site_without_run_is_a_clear_error(shelf: dict[str, str]) -> None:
    r = subprocess.run([*CLI, "run", "--site", "it", "--", "true"], env=shelf,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "site 'it' has no Run pillar (it has: repo)" in r.stderr
    assert "Traceback" not in r.stderr and "AttributeError" not in r.stderr


def test_a_refused_run_records_nothing(shelf: dict[str, str]) -> None:
    r = subprocess.run([*CLI, "run", "--site", "it", "--", "true"], env=shelf,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    jobs = subprocess.run([*CLI, "jobs", "--json"], env=shelf, capture_output=True, text=True,
                          timeout=60)
    assert jobs.returncode == 0, jobs.stderr
    assert json.loads(jobs.stdout) == []


def test_every_verb_on_a_missing_pillar_is_not_supported(home: Path, shelf: dict[str, str],
                                                         tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path / "plugin-shelf_site"))
    import importlib
    importlib.invalidate_caches()
    (tmp_path / "f.txt").write_text("data")
    with Manager(home) as m:
        site = m.site("it")
        assert site.pillars() == ("repo",)
        stored = m.put(tmp_path / "f.txt", str(tmp_path / "stored.txt"), site="it")
        assert stored.sha256 and (tmp_path / "stored.txt").read_text() == "data"
        ctx = JobContext(site="it")
        for verb in (lambda: site.run.status(ctx), lambda: site.run.cancel(ctx),
                     lambda: site.run.log(ctx), lambda: site.auth.login(),
                     lambda: site.spin.compute_types(), lambda: site.spin.provision("x"),
                     lambda: site.check_request(JobDefn(entry=["true"]))):
            with pytest.raises(NotSupported, match=r"site 'it' has no (Run|Auth|Spin) pillar"):
                verb()
        with pytest.raises(NotSupported, match="has no Run pillar"):
            m.submit(JobDefn(entry=["true"], site="it"))


def test_pull_goes_through_the_public_driver_interface(shelf: dict[str, str], home: Path,
                                                       tmp_path: Path) -> None:
    """``lwfm pull`` works for any site that implements Site.fetch_thread, not just ssh."""
    lab = {**shelf, "LWFM_HOME": str(tmp_path / "lab-home")}
    made = subprocess.run([*CLI, "run", "--wait", "--json", "--name", "at the lab", "--", "true"],
                          env=lab, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    lab_job = json.loads(made.stdout)["id"]
    r = subprocess.run([*CLI, "pull", "it", "--json"], env=shelf, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["import"]["changed"] is True
    with Manager(home) as m:
        assert m.store.get_job(lab_job).state is State.COMPLETE
    local = subprocess.run([*CLI, "pull", "local"], env=shelf, capture_output=True, text=True,
                           timeout=60)
    assert local.returncode == 1 and "site 'local' runs no lwfm instance" in local.stderr


def test_core_cli_imports_no_private_driver_module() -> None:
    src = (Path(__file__).resolve().parents[1] / "lwfm" / "cli").glob("*.py")
    assert not [f.name for f in src if "lwfm.sites._" in f.read_text()]


# -- requests a site cannot honour ----------------------------------------------------------

class _Limited(Run):
    resource_keys = frozenset({"cpu_seconds", "walltime"})

    def submit(self, defn, ctx):
        raise AssertionError("not reached")

    def status(self, ctx):
        raise AssertionError("not reached")

    def cancel(self, ctx):
        return False


class _Site(Site):
    def __init__(self, host: SiteHost, spin: bool = True):
        super().__init__(host)
        self.auth = NoAuth()
        self.run = _Limited()
        if spin:
            self.spin = StaticSpin(["cpu", "gpu"])


def test_check_request_names_what_a_site_cannot_honour(home: Path) -> None:
    site = _Site(SiteHost("hpc", home))
    site.check_request(JobDefn(entry=["true"], compute_type="gpu",
                               resources={"cpu_seconds": 5, "walltime": "1h"}))
    with pytest.raises(NotSupported, match=r"site 'hpc' cannot honour resource 'gpus' "
                                           r"\(it honours: cpu_seconds, walltime\)"):
        site.check_request(JobDefn(entry=["true"], resources={"cpu_seconds": 5, "gpus": 2}))
    with pytest.raises(NotSupported, match=r"site 'hpc' has no compute type 'tpu' \(it has: cpu, gpu\)"):
        site.check_request(JobDefn(entry=["true"], compute_type="tpu"))
    for bad in (0, -1, 1.5, True, "5"):
        with pytest.raises(InvalidInput, match="resource 'cpu_seconds' must be a positive whole"):
            site.check_request(JobDefn(entry=["true"], resources={"cpu_seconds": bad}))
    spinless = _Site(SiteHost("bare", home), spin=False)
    assert spinless.pillars() == ("auth", "run")
    with pytest.raises(NotSupported, match=r"site 'bare' has no compute type 'cpu' \(it has: none\)"):
        spinless.check_request(JobDefn(entry=["true"], compute_type="cpu"))


def test_the_contract_is_declared_on_the_abcs() -> None:
    """What the Manager relies on is declared (no getattr probing needed)."""
    assert Run.supervises(_Limited(), "any") is False and isinstance(Run.detach, bool)
    assert PILLARS == ("auth", "run", "repo", "spin")
    for name in ("pillars", "check_request", "fetch_thread", "close"):
        assert callable(getattr(Site, name))
    with pytest.raises(TypeError, match="must be a Run"):
        _Site(SiteHost("x", Path("/nonexistent"))).run = object()  # type: ignore[assignment]
