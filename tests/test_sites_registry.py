"""Site drivers come from the `lwfm.sites` entry-point group; pillars refuse clearly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lwfm import JobDefn, Manager, State
from lwfm.errors import ConfigError, NotSupported

PLUGIN = textwrap.dedent('''
    """A third-party site driver: the local site under another name, with one compute type."""
    from lwfm.sites.local import LocalSite
    from lwfm.site import StaticSpin

    class EchoSite(LocalSite):
        def __init__(self, host):
            super().__init__(host)
            self.spin = StaticSpin(["tiny"])
''')


def _plugin(tmp: Path) -> Path:
    """Install a package the way pip would: its module plus a dist-info with entry points."""
    root = tmp / "plugin"
    dist = root / "thirdparty_site-0.1.dist-info"
    dist.mkdir(parents=True)
    (root / "thirdparty_site.py").write_text(PLUGIN)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-site\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[lwfm.sites]\nechosite = thirdparty_site:EchoSite\n")
    return root


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
