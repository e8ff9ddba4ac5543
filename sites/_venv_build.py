"""Build a site's virtualenv once and reuse it.

The venv is keyed by a hash of (requirements, base python version, the host
site-packages it sees) kept in a marker file inside it: the marker is written last, so a venv without a matching marker is
incomplete or stale and gets rebuilt. A file lock next to the venv keeps two processes
from building the same one at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import site as _site
import subprocess
import sys
from pathlib import Path

from lwfm.errors import ConfigError, SiteError

MARKER = ".lwfm-venv.json"
HOST_PTH = "lwfm-host-site.pth"   # in the venv's site-packages: the host venv's packages
_TAIL = 3000


def venv_python(path: Path) -> Path:
    return path / "bin" / "python"


def python_version(python: str) -> str:
    """The full version string of the base interpreter (part of the venv's key)."""
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        return sys.version
    try:
        out = subprocess.run([python, "-c", "import sys; print(sys.version)"],
                             capture_output=True, text=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError) as e:
        raise ConfigError(f"base python {python!r} of the venv site does not run: {e}") from None
    return out.stdout.strip()


def host_site_dirs(version: str) -> list[str]:
    """The site-packages of the venv lwfm itself runs in, if it runs in one.

    ``venv --system-site-packages`` shows the *base* interpreter's packages, not the
    host venv's, where lwfm and its dependencies usually are (an editable install's
    finder too). These dirs are added beneath the venv's own, as ``site`` does (their
    .pth files processed), when the venv's python is the host's version: packages
    built for another version would not import."""
    if sys.prefix == sys.base_prefix:
        return []            # not in a venv: the base's packages are the host's
    if version.split(".")[:2] != sys.version.split(".")[:2]:
        return []            # "3.11.7 (main, ...)": compare major.minor
    prefix = os.path.realpath(sys.prefix) + os.sep
    return [d for d in _site.getsitepackages()
            if os.path.realpath(d).startswith(prefix) and os.path.isdir(d)]


def spec_key(requirements: list[str], version: str, system_site_packages: bool = False,
             host_dirs: list[str] | None = None) -> str:
    spec: dict[str, object] = {"requirements": requirements, "python": version}
    if system_site_packages:
        spec["system_site_packages"] = True
    if host_dirs:
        spec["host_site_dirs"] = host_dirs
    blob = json.dumps(spec, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def read_marker(path: Path) -> dict | None:
    try:
        return json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        return None


def is_current(path: Path, key: str) -> bool:
    m = read_marker(path)
    return bool(m) and m.get("key") == key and venv_python(path).exists()


def ensure_venv(path: Path, requirements: list[str], python: str, *,
                site: str = "", timeout: float = 900, system_site_packages: bool = False) -> bool:
    """Make ``path`` a venv holding ``requirements``; True if it had to be (re)built.

    ``system_site_packages`` lets the venv see the host's packages (lwfm among them:
    the base interpreter's, and the host venv's if lwfm runs in one) beneath its own,
    which still win: the pinned versions shadow the host's.
    """
    version = python_version(python)
    host_dirs = host_site_dirs(version) if system_site_packages else []
    key = spec_key(requirements, version, system_site_packages, host_dirs)
    if is_current(path, key):
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if is_current(path, key):     # another process built it meanwhile
                return False
            _build(path, requirements, python, key, site, timeout, system_site_packages,
                   host_dirs)
            return True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _clear(path: Path) -> None:
    """Remove a stale venv, refusing to delete a directory that is not one."""
    if not path.exists():
        return
    if not (path / "pyvenv.cfg").exists() and any(path.iterdir()):
        raise ConfigError(f"venv_dir {path} exists and is not a virtualenv; "
                          f"point venv_dir at a new or empty directory")
    shutil.rmtree(path)


def _host_pip_usable() -> bool:
    """pip >= 22.3 can install into another interpreter (``--python``), which
    skips the slow ensurepip step of every venv build."""
    if importlib.util.find_spec("pip") is None:
        return False
    try:
        import pip
        major, minor = (int(x) for x in pip.__version__.split(".")[:2])
    except (ImportError, ValueError):
        return False
    return (major, minor) >= (22, 3)


def _run(cmd: list[str], what: str, site: str, timeout: float) -> None:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise SiteError(f"venv site {site!r}: {what} took longer than {timeout:.0f}s") from None
    except OSError as e:
        raise SiteError(f"venv site {site!r}: {what} could not start: {e}") from None
    if p.returncode != 0:
        tail = (p.stdout + p.stderr)[-_TAIL:]
        raise SiteError(f"venv site {site!r}: {what} failed (exit {p.returncode}); "
                        f"fix the site's requirements in lwfm.toml. Output tail:\n{tail}")


def _venv_site_packages(path: Path) -> Path:
    found = sorted(path.glob("lib/python*/site-packages"))
    if len(found) != 1:
        raise SiteError(f"venv {path}: expected one lib/python*/site-packages, found {found}")
    return found[0]


def _build(path: Path, requirements: list[str], python: str, key: str,
           site: str, timeout: float, system_site_packages: bool, host_dirs: list[str]) -> None:
    _clear(path)
    host_pip = _host_pip_usable()
    no_pip = host_pip or not requirements     # nothing for the venv's own pip to do
    cmd = [python, "-m", "venv"] + (["--without-pip"] if no_pip else []) + (
        ["--system-site-packages"] if system_site_packages else []) + [str(path)]
    try:
        _run(cmd, "creating the virtualenv", site, timeout)
        if requirements:
            pip = ([sys.executable, "-m", "pip", "--python", str(venv_python(path))] if host_pip
                   else [str(venv_python(path)), "-m", "pip"])
            _run(pip + ["install", "--disable-pip-version-check", "--no-input", *requirements],
                 "pip install " + " ".join(requirements), site, timeout)
        if host_dirs:   # after pip: it installs what the venv itself lacks, as before
            lines = "".join(f"import site; site.addsitedir({d!r})\n" for d in host_dirs)
            (_venv_site_packages(path) / HOST_PTH).write_text(lines)
        marker = {"key": key, "requirements": requirements, "python": python,
                  "system_site_packages": system_site_packages, "host_site_dirs": host_dirs}
        tmp = path / f"{MARKER}.tmp"
        tmp.write_text(json.dumps(marker, indent=1))
        os.replace(tmp, path / MARKER)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)   # never leave a half-built venv behind
        raise
