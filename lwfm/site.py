"""The site seam: four small pillars every site driver implements.

A driver is a :class:`Site` subclass registered in the ``lwfm.sites`` entry-point
group, so a third-party package adds one without touching lwfm. The Manager owns the
store; drivers never touch it. They talk back through :class:`SiteHost`: ``report``
a status (from a reaper thread, a poller, a remote callback) and the per-job
directory for logs. Stdlib-only on purpose (see ``lwfm.model``).

What the core relies on is declared here, not probed for: ``Run.supervises``,
``Run.detach``, ``Run.resource_keys``, ``Site.pillars``, ``Site.check_request``,
``Site.fetch_thread`` and ``Site.close``. A site may leave out pillars (a data
service is Repo-only): every verb on a missing one raises :class:`NotSupported`.
A Repo whose copies are tasks of a service of their own (Globus) sets
``Repo.transfers`` (:class:`Transfers`): each copy is then a job, and ``Site.jobs``
answers for it (status, wait, cancel, log) even on a site without a Run pillar.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generic, Mapping, TypeVar, overload

from .errors import InvalidInput, NotSupported
from .model import DataObject, JobContext, JobDefn, JobStatus


def _no_data(_: Any) -> DataObject:
    raise NotSupported("this site host keeps no data records (it is not a Manager's)")


@dataclass
class SiteHost:
    """What a driver may use of the lwfm instance hosting it."""

    name: str                                   # the site's configured name
    home: Path                                  # the lwfm home
    config: dict[str, Any] = field(default_factory=dict)   # its [sites.NAME] table
    report: Callable[[JobStatus], None] = lambda st: None  # record a status change
    instance_id: str = ""
    #: For a driver whose jobs are not processes that can call lwfm themselves (a
    #: circuit on a quantum service): look up the data object a job names as its input,
    #: and record data a job used or produced (``DataObject.job_id`` says which). The
    #: Manager sets both; they link and fire data triggers as ``Manager.put`` does.
    lookup_data: Callable[[str], DataObject] = _no_data
    record_data: Callable[[DataObject], DataObject] = _no_data

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


#: JobDefn.resources keys a site that runs jobs as processes can enforce with rlimits:
#: key -> (the ``resource`` module's limit name, what one unit is in that limit's units).
PROCESS_LIMITS: dict[str, tuple[str, int]] = {
    "cpu_seconds": ("RLIMIT_CPU", 1),            # CPU time: SIGXCPU past it, SIGKILL 1 s on
    "memory_mb": ("RLIMIT_AS", 1024 * 1024),     # address space; allocations past it fail
    "open_files": ("RLIMIT_NOFILE", 1),          # open file descriptors
}


#: The JobDefn.resources key of a job's wall-time limit in seconds: a site that can stop a
#: job past it lists it in ``Run.resource_keys`` (local does; a batch site passes it on).
WALLTIME = "walltime_s"


def process_limits(resources: Mapping[str, Any]) -> dict[str, int]:
    """The soft rlimits (``{"RLIMIT_CPU": 5, ...}``, in the limit's own units) that
    ``resources`` asks for; other keys are not limits and are left out. The hard limit
    is the same, but one second more for RLIMIT_CPU: the job is told (SIGXCPU, which
    its record then shows) before it is killed."""
    return {PROCESS_LIMITS[k][0]: int(v) * PROCESS_LIMITS[k][1]
            for k, v in resources.items() if k in PROCESS_LIMITS}


class Run(abc.ABC):
    #: The JobDefn.resources keys this site enforces. Any other key is refused at submit
    #: (``Site.check_request``): a request that is silently ignored would be a lie in the
    #: record. Process-based sites can take ``PROCESS_LIMITS``.
    resource_keys: frozenset[str] = frozenset()

    #: True: a job records its own end wherever it runs (an exit file, a remote wrapper, a
    #: batch system), so its end is known after the submitter exits or is killed. Every
    #: driver lwfm ships is so, and the Manager relies on it: a driver whose jobs die
    #: with their submitter, or lose their exit status, must say False.
    detach: bool = True

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

    def supervises(self, job_id: str) -> bool:
        """Whether this process will be told when the job ends (a reaper, a worker's exit
        event): the Manager then neither polls ``status`` for it nor takes a missing
        answer for a lost job. Default: no, poll it every ``poll_interval`` seconds."""
        return False

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

    #: A Repo whose copies are tasks of a service of their own (a Globus transfer) sets
    #: this: each put/get/transfer is then recorded as a job of the site, and
    #: :attr:`Site.jobs` answers for those jobs (status, wait, cancel, log) through it,
    #: even on a site with no Run pillar. None: copies are plain calls (put/get above).
    transfers: "Transfers | None" = None


class Transfers(abc.ABC):
    """Copies that are jobs: started, followed and ended on the site's own service.

    The Manager records the job (``plan`` says what to record: a payload entry with
    ``op`` "put", "get" or "transfer", ``source`` and ``destination`` URLs, and the
    ``sha256`` lwfm knows for the source, if any), starts it (``submit``, which sets
    ``ctx.native_id``), follows it in this process (``follow``, which reports each change
    through ``SiteHost.report``), then records its two ends (``ends``): the original, used
    by the job, and the copy, generated by it and derived from the original. Any process
    can ask ``status`` or ``cancel`` by the native id, as for a Run job.
    """

    #: seconds between looks at a copy (``follow``, and the Manager's polls of the others)
    poll_interval: float = 1.0

    @abc.abstractmethod
    def plan(self, op: str, source: str, dest: str) -> JobDefn:
        """The transfer job to record for this copy; refuses bad input before anything."""

    @abc.abstractmethod
    def submit(self, defn: JobDefn, ctx: JobContext) -> JobStatus:
        """Start the copy ``plan`` described; set ``ctx.native_id``; its first status."""

    def adopt(self, defn: JobDefn, ctx: JobContext) -> None:
        """Take over a started copy whose starter is gone, so ``follow`` can follow it here."""
        raise NotSupported("this site cannot take over a transfer started elsewhere")

    @abc.abstractmethod
    def follow(self, ctx: JobContext) -> JobStatus:
        """Poll the copy started here until it ends, reporting each change; its last status."""

    @abc.abstractmethod
    def ends(self, ctx: JobContext) -> tuple[DataObject, DataObject]:
        """(original, copy) of a copy that completed here; raises why one that did not failed."""

    @abc.abstractmethod
    def status(self, ctx: JobContext) -> JobStatus:
        """The copy's status now (any process)."""

    @abc.abstractmethod
    def cancel(self, ctx: JobContext) -> bool:
        """Stop the copy; True if it was going (any process)."""

    def log(self, ctx: JobContext) -> str:
        """What the service says happened to the copy (its event list)."""
        raise NotSupported("this site keeps no transfer logs")

    def supervises(self, job_id: str) -> bool:
        """True while ``follow`` runs for it in this process (it reports every change)."""
        return False


class Spin(abc.ABC):
    def compute_types(self) -> list[str]:
        """The names a JobDefn.compute_type may take here; none: any is refused."""
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


class NoAuth(Auth):
    """For sites that need no login (your own machine)."""

    def login(self, force: bool = False) -> None:
        return None

    def is_current(self) -> bool:
        return True


P = TypeVar("P")

#: The pillars a site may have, in the order they are listed.
PILLARS = ("auth", "run", "repo", "spin")


class _Pillar(Generic[P]):
    """A pillar slot on :class:`Site`. A site that never sets one lacks it, and every
    verb on it is a clear NotSupported ("site X has no Run pillar"), not an
    AttributeError from deep inside the Manager."""

    def __init__(self, kind: type[P]):
        self.kind = kind

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> "_Pillar[P]": ...
    @overload
    def __get__(self, obj: "Site", owner: type | None = None) -> P: ...

    def __get__(self, obj: "Site | None", owner: type | None = None) -> "P | _Pillar[P]":
        if obj is None:
            return self
        try:
            return obj.__dict__[self.name]
        except KeyError:
            raise NotSupported(f"site {obj.name!r} has no {self.kind.__name__} pillar "
                               f"(it has: {', '.join(obj.pillars()) or 'none'})") from None

    def __set__(self, obj: "Site", value: P) -> None:
        if not isinstance(value, self.kind):
            raise TypeError(f"{type(obj).__name__}.{self.name} must be a {self.kind.__name__}, "
                            f"not {type(value).__name__}")
        obj.__dict__[self.name] = value


@dataclass
class FetchedThread:
    """What ``Site.fetch_thread`` brought home: a bundle file, checked end to end."""

    path: Path            # the local bundle (zip)
    source: str           # where it was made, e.g. the remote bundle's path
    sha256: str
    size: int


class Site(abc.ABC):
    """A site bundles up to four pillars; subclasses set those they have in ``__init__``."""

    auth = _Pillar(Auth)
    run = _Pillar(Run)
    repo = _Pillar(Repo)
    spin = _Pillar(Spin)

    def __init__(self, host: SiteHost):
        self.host = host

    @property
    def name(self) -> str:
        return self.host.name

    def pillars(self) -> tuple[str, ...]:
        """The pillars this site has (of ``PILLARS``), e.g. ``("repo",)`` for a data service."""
        return tuple(p for p in PILLARS if p in self.__dict__ or
                     not isinstance(getattr(type(self), p, None), _Pillar))

    @property
    def jobs(self) -> "Run | Transfers":
        """What answers for this site's jobs (submit, status, cancel, log, poll pace): its
        Run pillar, or, on a site without one whose Repo's copies are jobs (Globus
        transfers), ``Repo.transfers``; otherwise NotSupported ("no Run pillar")."""
        if "run" not in self.pillars() and "repo" in self.pillars() \
                and self.repo.transfers is not None:
            return self.repo.transfers
        return self.run

    def check_request(self, defn: JobDefn) -> None:
        """Refuse, before anything starts, a job this site cannot run as asked: no Run
        pillar, a compute type it does not have, a resource key it does not enforce
        (a request that is silently ignored would be recorded as if it had been met)."""
        run = self.run                                       # NotSupported if it has none
        if defn.compute_type is not None:
            types = self.spin.compute_types() if "spin" in self.pillars() else []
            if defn.compute_type not in types:
                raise NotSupported(f"site {self.name!r} has no compute type "
                                   f"{defn.compute_type!r} (it has: {', '.join(types) or 'none'})")
        for key, value in defn.resources.items():
            if key not in run.resource_keys:
                raise NotSupported(f"site {self.name!r} cannot honour resource {key!r} "
                                   f"(it honours: {', '.join(sorted(run.resource_keys)) or 'none'})")
            if key in PROCESS_LIMITS and (isinstance(value, bool) or not isinstance(value, int)
                                          or value <= 0):
                raise InvalidInput(f"resource {key!r} must be a positive whole number, "
                                   f"not {value!r}")
            if key == WALLTIME and (isinstance(value, bool) or not isinstance(value, (int, float))
                                    or not value > 0):
                raise InvalidInput(f"resource {key!r} must be a number of seconds > 0, "
                                   f"not {value!r}")

    def fetch_thread(self, dest: Path, *, workflow_id: str | None = None,
                     with_data: bool = False) -> FetchedThread:
        """Export the thread of the lwfm instance this site runs (one workflow, or all)
        as a bundle at ``dest``; ``lwfm pull`` imports it. Only sites that run lwfm
        themselves can (a remote lab over SSH)."""
        raise NotSupported(f"site {self.name!r} runs no lwfm instance to pull a thread from "
                           f"(lwfm pull needs a site such as ssh with a remote_home)")

    def close(self) -> None:
        """Release connections, threads and helper processes this site started. The
        Manager calls it once, on its own close; a site must not be used after it."""
