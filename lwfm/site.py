"""The site seam: four small pillars every site driver implements.

A driver is a :class:`Site` subclass registered in the ``lwfm.sites`` entry-point
group, so a third-party package adds one without touching lwfm. The Manager owns the
store; drivers never touch it. They talk back through :class:`SiteHost`: ``report``
a status (from a reaper thread, a poller, a remote callback) and the per-job
directory for logs. Stdlib-only on purpose (see ``lwfm.model``).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import NotSupported, SiteError
from .model import DataObject, JobContext, JobDefn, JobStatus


@dataclass
class SiteHost:
    """What a driver may use of the lwfm instance hosting it."""

    name: str                                   # the site's configured name
    home: Path                                  # the lwfm home
    config: dict[str, Any] = field(default_factory=dict)   # its [sites.NAME] table
    report: Callable[[JobStatus], None] = lambda st: None  # record a status change
    instance_id: str = ""

    def job_dir(self, job_id: str, create: bool = True) -> Path:
        """A directory for one job's files (logs, exit code); made only when asked."""
        d = self.home / "logs" / job_id[:2] / job_id
        if create:
            d.mkdir(parents=True, exist_ok=True)
        return d

    def job_env(self, defn: JobDefn, ctx: JobContext, home: str | None = None) -> dict[str, str]:
        """The variables by which a job (and lwfm inside it) finds its context; the job's
        own ``env`` comes first so it cannot override them. ``home``: the lwfm home the
        job should use where it runs (a remote site's), default this one."""
        return {**defn.env, "LWFM_JOB_ID": ctx.job_id, "LWFM_HOME": home or str(self.home),
                "LWFM_WORKFLOW_ID": ctx.workflow_id or "", "LWFM_SITE": self.name,
                "LWFM_INSTANCE_ID": self.instance_id, "LWFM_PARENT_ID": ctx.parent_id or "",
                "LWFM_ORIGINATOR_ID": ctx.originator_id or "", "LWFM_JOB_NAME": defn.name}


class Auth(abc.ABC):
    @abc.abstractmethod
    def login(self, force: bool = False) -> None:
        """Obtain or refresh credentials. Secrets stay in memory or the site's own keyring."""

    @abc.abstractmethod
    def is_current(self) -> bool:
        """Whether a login is valid now."""


class Run(abc.ABC):
    @abc.abstractmethod
    def submit(self, defn: JobDefn, ctx: JobContext) -> JobStatus:
        """Start the job; set ``ctx.native_id``; return its first status."""

    @abc.abstractmethod
    def status(self, ctx: JobContext) -> JobStatus:
        """Ask the site for the job's status now."""

    @abc.abstractmethod
    def cancel(self, ctx: JobContext) -> bool:
        """Stop the job; True if it was running. Must work from any process."""

    def log(self, ctx: JobContext) -> str:
        """The job's stdout and stderr, as far as they go."""
        raise NotSupported("this site keeps no job logs")

    #: seconds between status polls when no event tells us a job moved
    poll_interval: float = 1.0


class Repo(abc.ABC):
    @abc.abstractmethod
    def put(self, local_path: Path, dest: str, ctx: JobContext | None) -> DataObject:
        """Copy a local file to ``dest`` on the site; return what was stored (url, size, sha256)."""

    @abc.abstractmethod
    def get(self, source: str, local_path: Path, ctx: JobContext | None) -> DataObject:
        """Copy ``source`` from the site to a local file; return it (url = the local copy)."""

    def find(self, pattern: str) -> list[str]:
        """Site-native listing of URLs matching a glob (lwfm's own catalog is Manager.find)."""
        raise NotSupported("this site cannot list its data")


class Spin(abc.ABC):
    def compute_types(self) -> list[str]:
        return []

    def provision(self, compute_type: str, **options: Any) -> str:
        raise NotSupported("this site cannot provision compute")

    def deprovision(self, resource_id: str) -> None:
        raise NotSupported("this site cannot deprovision compute")


class StaticSpin(Spin):
    """Spin for sites with a fixed, configured list of compute types."""

    def __init__(self, types: list[str]):
        self._types = list(types)

    def compute_types(self) -> list[str]:
        return list(self._types)

    def require(self, site: str, compute_type: str | None) -> None:
        """Refuse a job asking for a compute type this site does not have."""
        if compute_type and self._types and compute_type not in self._types:
            raise SiteError(f"site {site!r} has no compute type {compute_type!r} "
                            f"(configured: {', '.join(self._types)})")


class NoAuth(Auth):
    """For sites that need no login (your own machine)."""

    def login(self, force: bool = False) -> None:
        return None

    def is_current(self) -> bool:
        return True


class Site(abc.ABC):
    """A site bundles its four pillars. Subclasses build them in ``__init__``."""

    auth: Auth
    run: Run
    repo: Repo
    spin: Spin

    def __init__(self, host: SiteHost):
        self.host = host

    @property
    def name(self) -> str:
        return self.host.name

    def close(self) -> None:
        """Release connections and helper processes."""
