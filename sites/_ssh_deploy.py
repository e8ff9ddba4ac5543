"""``lwfm deploy``: install lwfm at an ssh site that cannot reach a package index.

A wheelhouse made at home (``pip wheel "lwfm[psij]" -w wheelhouse``) goes over SFTP,
each wheel checksummed at both ends and sent only if the lab's copy differs; a venv is
built at the lab and lwfm installed into it from that wheelhouse alone (``--no-index``);
the lab's lwfm home is initialised and the lab's lwfm version checked against this one.
A marker in the venv holds the sha256 of the lwfm wheel installed: a second run with the
same wheelhouse uploads and installs nothing.
"""

from __future__ import annotations

import importlib.metadata
import re
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lwfm.errors import ConfigError, SiteError
from lwfm.files import sha256_file

if TYPE_CHECKING:
    from .ssh import SSHSite

q = shlex.quote
_WHEEL = re.compile(r"^lwfm-([^-]+)-.*\.whl$")
_MARKER = ".lwfm-deployed"


@dataclass
class DeployReport:
    """What a deploy did; ``changed`` is False on a re-run with nothing new."""

    site: str
    venv: str
    version: str
    lwfm_command: str
    uploaded: list[str] = field(default_factory=list)
    venv_created: bool = False
    installed: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.uploaded) or self.venv_created or self.installed

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "changed": self.changed}


def _lwfm_wheel(wheelhouse: Path, version: str) -> Path:
    wheels = [p for p in wheelhouse.glob("lwfm-*.whl") if _WHEEL.match(p.name)]
    if not wheels:
        raise ConfigError(f"{wheelhouse} holds no lwfm wheel: make the wheelhouse with "
                          f'pip wheel "lwfm[psij]" -w {wheelhouse} (where PyPI is reachable)')
    match = [p for p in wheels if _WHEEL.match(p.name).group(1) == version]  # type: ignore[union-attr]
    if not match:
        found = ", ".join(p.name for p in wheels)
        raise ConfigError(f"{wheelhouse} holds {found}, not lwfm {version} (this lwfm): "
                          "deploy the version you run, or the two cannot exchange threads")
    return match[0]


def deploy(site: "SSHSite", wheelhouse: Path, *, venv: str | None = None,
           extras: str = "", system_site_packages: bool = False) -> DeployReport:
    """Install lwfm at ``site`` from ``wheelhouse`` (see the module docstring)."""
    if not wheelhouse.is_dir():
        raise ConfigError(f"the wheelhouse {wheelhouse} is not a directory")
    version = importlib.metadata.version("lwfm")
    lwfm_wheel = _lwfm_wheel(wheelhouse, version)
    conn, base = site.conn, site.base
    remote_wh = f"{base}/deploy/wheelhouse"
    venv = venv or f"{base}/deploy/venv"
    if not venv.startswith("/"):
        raise ConfigError(f"the remote venv must be an absolute path, not {venv!r}")
    report = DeployReport(site=site.name, venv=venv, version=version,
                          lwfm_command=f"{venv}/bin/lwfm")
    conn.check(f"mkdir -p -- {q(remote_wh)}", "creating the remote wheelhouse")
    _, out, _ = conn.execute(f"cd {q(remote_wh)} && sha256sum -- *.whl 2>/dev/null")
    remote = {line.split(None, 1)[1].strip(): line.split()[0] for line in out.splitlines()
              if len(line.split(None, 1)) == 2}
    for wheel in sorted(wheelhouse.glob("*.whl")):
        if remote.get(wheel.name) != sha256_file(wheel):
            site.repo.put(wheel, f"{remote_wh}/{wheel.name}", None)
            report.uploaded.append(wheel.name)
    python = " ".join(q(a) for a in site.python_argv())
    if conn.execute(f"test -x {q(venv)}/bin/python")[0] != 0:
        flag = " --system-site-packages" if system_site_packages else ""
        conn.check(f"{python} -m venv{flag} {q(venv)}", "building the remote venv", timeout=600)
        report.venv_created = True
    want = f"{sha256_file(lwfm_wheel)} {extras}"
    _, have, _ = conn.execute(f"cat {q(venv)}/{_MARKER} 2>/dev/null")
    if have.strip() != want.strip():
        pip = f"{q(venv)}/bin/python -m pip install -q --no-index --find-links {q(remote_wh)}"
        spec = q(f"lwfm[{extras}]=={version}" if extras else f"lwfm=={version}")
        # lwfm itself into the venv (even where a system copy would satisfy pip), then
        # its dependencies, all from the wheelhouse alone.
        conn.check(f"{pip} --force-reinstall --no-deps {q(remote_wh + '/' + lwfm_wheel.name)}",
                   "installing lwfm at the lab", timeout=900)
        conn.check(f"{pip} {spec}", "installing lwfm's dependencies at the lab", timeout=900)
        conn.check(f"printf '%s\\n' {q(want)} > {q(venv)}/{_MARKER}", "marking the install")
        report.installed = True
    lwfm = q(f"{venv}/bin/lwfm")
    home = q(site.remote_home or f"{base}/lwfm-home")
    got = conn.check(f"{lwfm} --version", "running the lab's lwfm").strip().split()[-1:]
    if got != [version]:
        raise SiteError(f"site {site.name!r}: the lab's lwfm is {' '.join(got) or 'unknown'}, "
                        f"this one is {version}: run lwfm deploy with a wheelhouse of {version}")
    conn.check(f"{lwfm} --home {home} jobs --json", "initialising the lab's lwfm home")
    return report
