"""The ``globus`` site: data on a Globus collection, moved by checksum-verified transfers.

A Repo-only site (Globus Compute is out of scope): it has the Auth and Repo pillars,
no Run and no Spin. Every put, get and collection-to-collection copy is a Globus
transfer task that lwfm records as a job of this site (``Repo.transfers``), so
``lwfm status``, ``wait``, ``cancel`` and ``log`` work on it; a job of yours submitted
here is refused. Configuration (``[sites.NAME]`` in ``lwfm.toml``)::

    driver = "globus"
    collection = "UUID"          # the collection this site keeps data on
    base_path = "/archive/"      # where relative names go on it (default "/")
    local_collection = "UUID"    # the collection that sees this machine's files (GCP)
    client_id = "UUID"           # a Globus native app (app.globus.org/settings/developers)
    scopes = ["..."]             # default: Transfer with data_access on `collection`
    poll_interval = 5.0          # seconds between looks at a task
    on_fault = "fail"            # or "info": an ACTIVE task with error events
    retries = 5                  # transient HTTP/network errors, with backoff ...
    max_backoff_s = 10.0         # ... of at most this long
"""

from __future__ import annotations

import fnmatch
import posixpath
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlparse

from lwfm.errors import ConfigError, InvalidInput, NotFound, NotSupported, SiteError
from lwfm.files import check_path, local_path
from lwfm.model import DataObject, JobContext, JobDefn
from lwfm.site import Repo, Site, SiteHost

try:
    import globus_sdk  # noqa: F401 - the driver's one dependency, checked where it is chosen
except ImportError:  # pragma: no cover - the extra is installed wherever the tests run
    raise ConfigError("the globus site driver needs globus-sdk 4: pip install 'lwfm[globus]'") \
        from None

from ._globus_auth import GlobusAuth, default_scopes  # noqa: E402
from ._globus_task import GlobusTransfers  # noqa: E402


def _uuid(cfg: dict[str, Any], site: str, key: str, required: bool) -> str | None:
    v = cfg.get(key)
    if v is None:
        if required:
            raise ConfigError(f"[sites.{site}] needs {key} (a Globus collection id, a UUID)")
        return None
    try:
        return str(uuid.UUID(str(v)))
    except ValueError:
        raise ConfigError(f"[sites.{site}] {key} must be a UUID, not {v!r}") from None


def _number(cfg: dict[str, Any], site: str, key: str, default: float) -> float:
    v = cfg.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
        raise ConfigError(f"[sites.{site}] {key} must be a non-negative number, not {v!r}")
    return float(v)


class GlobusRepo(Repo):
    """Paths and URLs (``globus://COLLECTION/path``) on the site's collection, and find."""

    def __init__(self, site: "GlobusSite"):
        self.site = site
        self.tracker = GlobusTransfers(site)
        self.transfers = self.tracker

    # -- addressing -------------------------------------------------------------------
    @staticmethod
    def url(collection: str, path: str) -> str:
        return f"globus://{collection}{quote(path)}"

    def address(self, target: str, own: bool) -> tuple[str, str]:
        """(collection, absolute path) of a path (relative: under ``base_path``) or a
        ``globus://`` URL; ``own``: it must be on this site's collection."""
        check_path(target, "the Globus path")
        u = urlparse(target)
        if u.scheme == "globus":
            try:
                coll = str(uuid.UUID(u.netloc))
            except ValueError:
                raise InvalidInput(f"{target!r} does not name a collection id "
                                   "(globus://UUID/path)") from None
            path = unquote(u.path) or "/"
            if own and coll != self.site.collection:
                raise SiteError(f"{target!r} is not on site {self.site.name!r} (collection "
                                f"{self.site.collection})")
            return coll, path
        if u.scheme:
            raise InvalidInput(f"site {self.site.name!r} cannot address {target!r} (give a "
                               "path or a globus://COLLECTION/path URL)")
        if not own:
            raise InvalidInput(f"{target!r}: name the other collection's data by its "
                               "globus://COLLECTION/path URL")
        path = target if target.startswith("/") else posixpath.join(self.site.base_path, target)
        return self.site.collection, posixpath.normpath(path)

    def local_collection(self) -> str:
        if self.site.local_collection is None:
            raise ConfigError(f"[sites.{self.site.name}] needs local_collection to put or get "
                              "local files: the collection that sees this machine's files "
                              "(e.g. your Globus Connect Personal)")
        return self.site.local_collection

    @staticmethod
    def local_file(target: str, must_exist: bool) -> Path:
        path = local_path(target)
        if must_exist and not path.is_file():
            raise NotFound(f"no such file: {path}")
        if path.is_dir():
            raise InvalidInput(f"{path} is a directory: name the file")
        return path

    # -- the Repo verbs ---------------------------------------------------------------
    def put(self, local_path: Path, dest: str, ctx: JobContext | None) -> DataObject:
        raise NotSupported(f"site {self.site.name!r}: a copy is a Globus transfer job that lwfm "
                           "records; use Manager.put (or lwfm put --site)")

    def get(self, source: str, local_path: Path, ctx: JobContext | None) -> DataObject:
        raise NotSupported(f"site {self.site.name!r}: a copy is a Globus transfer job that lwfm "
                           "records; use Manager.get (or lwfm get --site)")

    def find(self, pattern: str) -> list[str]:
        """``operation_ls`` of the pattern's directory, names matched as a glob."""
        coll, path = self.address(pattern, own=True)
        parent, name = posixpath.split(path)
        tr = self.tracker
        try:
            listing = tr.call(f"listing {parent}", tr.tc.operation_ls, coll, path=parent or "/")
        except NotFound:
            return []
        return sorted(self.url(coll, posixpath.join(parent, e["name"])) for e in listing
                      if e.get("type") == "file" and fnmatch.fnmatchcase(e["name"], name))


class GlobusSite(Site):
    """Auth and Repo on a Globus collection (see the module docstring)."""

    def __init__(self, host: SiteHost):
        super().__init__(host)
        cfg, name = dict(host.config), host.name
        self.collection: str = _uuid(cfg, name, "collection", True)  # type: ignore[assignment]
        self.local_collection = _uuid(cfg, name, "local_collection", False)
        base = cfg.get("base_path", "/")
        if not isinstance(base, str) or not base.startswith("/"):
            raise ConfigError(f"[sites.{name}] base_path must be an absolute path on the "
                              f"collection, not {base!r}")
        self.base_path = base
        client_id = cfg.get("client_id")
        if client_id is not None:
            client_id = _uuid(cfg, name, "client_id", True)
        scopes = cfg.get("scopes", default_scopes([self.collection]))
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise ConfigError(f"[sites.{name}] scopes must be a list of Globus scope strings")
        self.on_fault = cfg.get("on_fault", "fail")
        if self.on_fault not in ("fail", "info"):
            raise ConfigError(f"[sites.{name}] on_fault must be \"fail\" or \"info\", "
                              f"not {self.on_fault!r}")
        self.poll_interval = _number(cfg, name, "poll_interval", 5.0)
        self.max_backoff_s = _number(cfg, name, "max_backoff_s", 10.0)
        retries = cfg.get("retries", 5)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigError(f"[sites.{name}] retries must be a whole number >= 0")
        self.retries = retries
        self.gauth = GlobusAuth(name, host.home, client_id, scopes)
        self.grepo = GlobusRepo(self)
        self.auth, self.repo = self.gauth, self.grepo

    def check_request(self, defn: JobDefn) -> None:
        raise NotSupported(f"site {self.name!r} has no Run pillar (it has: "
                           f"{', '.join(self.pillars())}): it keeps data on a Globus collection "
                           "(Globus Compute is out of scope); put, get and find data there")

    def close(self) -> None:
        self.gauth.close()
