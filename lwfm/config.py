"""The lwfm home: where the store, the graph, job logs and ``lwfm.toml`` live.

``LWFM_HOME`` (default ``~/.lwfm``) holds ``lwfm.toml``::

    [store]
    url = "postgresql+psycopg://user@host/db"   # default: SQLite (WAL) in the home

    [sites.hpc]
    driver = "ssh"          # an entry point name in the ``lwfm.sites`` group
    host = "login.lab.example"

    [secrets]
    extra_patterns = ["*_SIG", "ACME_*"]   # more env names never recorded (lwfm.secrets)

A site section without ``driver`` uses its own name as the driver (so ``[sites.local]``
just configures the ``local`` driver). ``local`` is always available.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .secrets import SECRET_NAME

CONFIG_FILE = "lwfm.toml"


def default_home() -> Path:
    return Path(os.environ.get("LWFM_HOME") or Path.home() / ".lwfm").expanduser()


@dataclass
class Config:
    home: Path
    store_url: str
    sites: dict[str, dict[str, Any]] = field(default_factory=dict)
    secret_patterns: tuple[str, ...] = ()

    @property
    def graph_path(self) -> Path:
        return self.home / "graph"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    def site_config(self, name: str) -> dict[str, Any]:
        if name in self.sites:
            return dict(self.sites[name])
        if name == "local":
            return {"driver": "local"}
        known = ", ".join(sorted(set(self.sites) | {"local"}))
        raise ConfigError(f"unknown site {name!r}; configured sites: {known} "
                          f"(add a [sites.{name}] section to {self.home / CONFIG_FILE})")


def load(home: str | os.PathLike[str] | None = None) -> Config:
    """Read the configuration of ``home`` (creating the directory if needed)."""
    h = Path(home).expanduser() if home else default_home()
    h.mkdir(parents=True, exist_ok=True)
    raw: dict[str, Any] = {}
    f = h / CONFIG_FILE
    if f.exists():
        try:
            raw = tomllib.loads(f.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{f} is not valid TOML: {e}") from None
    store = raw.get("store", {})
    if not isinstance(store, dict) or not isinstance(store.get("url", ""), str):
        raise ConfigError(f'{f}: [store] must be a table with url = "<SQLAlchemy URL>"')
    url = os.environ.get("LWFM_STORE_URL") or store.get("url") or f"sqlite:///{h / 'lwfm.db'}"
    sites = raw.get("sites", {})
    if not isinstance(sites, dict) or not all(isinstance(v, dict) for v in sites.values()):
        raise ConfigError(f"{f}: [sites.NAME] sections must be tables")
    patterns = _secret_patterns(raw.get("secrets", {}), f)
    # Process-wide and add-only (see lwfm.secrets): the store, bundle and trigger code
    # that redacts has no config in hand, and one name too many redacted is harmless.
    SECRET_NAME.add_patterns(patterns)
    return Config(home=h, store_url=url, sites=sites, secret_patterns=patterns)


def _secret_patterns(sec: Any, f: Path) -> tuple[str, ...]:
    """``[secrets] extra_patterns``: a list of non-empty shell-style globs. Anything else
    is an error, not ignored: a typo here would record a secret in clear."""
    usage = f'{f}: [secrets] takes extra_patterns = ["GLOB", ...] (e.g. "*_SIG")'
    if not isinstance(sec, dict) or set(sec) - {"extra_patterns"}:
        raise ConfigError(usage)
    pats = sec.get("extra_patterns", [])
    if not isinstance(pats, list) or not all(isinstance(p, str) and p.strip() for p in pats):
        raise ConfigError(usage)
    return tuple(p.strip() for p in pats)
