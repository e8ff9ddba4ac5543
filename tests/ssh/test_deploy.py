"""``lwfm deploy SITE`` against a real OpenSSH server: a wheelhouse goes over SFTP, a
venv is built at the "lab", lwfm is installed there from the wheelhouse alone
(``--no-index``), the lab's home is initialised and a re-run changes nothing.

The wheelhouse holds lwfm's own wheel only, built offline from this tree; its
dependencies come from the machine's Python through ``--system-site-packages`` (the
test has no package index to fill a full wheelhouse from). lwfm itself is installed into
the venv, not taken from the system: the test checks where the lab's lwfm imports from."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ._toml import write_sites

pytestmark = [pytest.mark.slow, pytest.mark.ssh]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheelhouse")
    work = tmp_path_factory.mktemp("build")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                        "-q", "-w", str(out), str(ROOT)], capture_output=True, text=True,
                       cwd=work, timeout=600)
    assert r.returncode == 0, r.stderr
    return out


def _deploy(home: Path, wheelhouse: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lwfm.cli", "--home", str(home), "deploy", "lab",
                           "--wheelhouse", str(wheelhouse), "--system-site-packages", "--json",
                           *extra], capture_output=True, text=True, timeout=900)


def test_deploy_installs_lwfm_at_the_lab_and_a_rerun_is_a_no_op(live_sshd, home, wheelhouse):
    write_sites(home, {"lab": live_sshd.site_config(reconnect_timeout=30)})
    first = _deploy(home, wheelhouse)
    assert first.returncode == 0, first.stderr
    rep = json.loads(first.stdout)
    venv = Path(rep["venv"])
    assert rep["changed"] and rep["venv_created"] and rep["installed"]
    assert rep["uploaded"] == [p.name for p in wheelhouse.glob("*.whl")]
    where = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import lwfm, importlib.metadata as m; "
                            "print(lwfm.__file__); print(m.version('lwfm'))"],
                           capture_output=True, text=True, timeout=60, cwd=venv)
    path, version = where.stdout.split()
    assert path.startswith(str(venv)) and version == rep["version"]
    assert (live_sshd.remote_home / "lwfm.db").exists()   # the lab's home is initialised
    again = _deploy(home, wheelhouse)
    assert again.returncode == 0, again.stderr
    rep2 = json.loads(again.stdout)
    assert rep2["changed"] is False and rep2["uploaded"] == [] and not rep2["installed"]


def test_deploy_refuses_a_wheelhouse_without_this_lwfm(live_sshd, home, tmp_path):
    write_sites(home, {"lab": live_sshd.site_config(reconnect_timeout=30)})
    empty = tmp_path / "wh"
    empty.mkdir()
    before = sorted(p for p in live_sshd.remote_home.rglob("*") if "deploy" in p.parts)
    out = _deploy(home, empty)
    assert out.returncode != 0 and "holds no lwfm wheel" in out.stderr
    after = sorted(p for p in live_sshd.remote_home.rglob("*") if "deploy" in p.parts)
    assert after == before   # nothing was sent or built


def test_deploy_refuses_a_site_that_is_not_ssh(home, tmp_path):
    out = subprocess.run([sys.executable, "-m", "lwfm.cli", "--home", str(home), "deploy", "local",
                          "--wheelhouse", str(tmp_path)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 1 and "is not an ssh site" in out.stderr
