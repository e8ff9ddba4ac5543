"""The lwfm data model: jobs, their statuses, workflows, data notations and triggers.

Everything here is a plain dataclass that round-trips through JSON (``to_dict`` /
``from_dict``), because every record is persisted as SQL rows and shipped in bundles
as JSON-LD: nothing is ever pickled. This module is stdlib-only on purpose, so a
site driver running inside a foreign virtualenv can import it.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

from .errors import InvalidInput
from .retries import Retries
# Secret-looking env names (their values are never recorded): the rule is lwfm.secrets.
from .secrets import REDACTED, SECRET_NAME, redacted_env  # noqa: F401 - re-exported
from .text import check_text, check_texts, shown


_RANDOM = bytearray()
_RANDOM_LOCK = threading.Lock()
# A forked child must never hand out its parent's remaining random bytes again.
os.register_at_fork(after_in_child=_RANDOM.clear)


def new_id() -> str:
    """A globally unique id (UUID version 4): lwfm instances merge their threads by these.

    Random bytes come from os.urandom 4 KiB at a time: one syscall per 256 ids, since
    an id is minted on every submit (the hot path)."""
    with _RANDOM_LOCK:
        if not _RANDOM:
            _RANDOM.extend(os.urandom(4096))
        raw = bytes(_RANDOM[-16:])
        del _RANDOM[-16:]
    return str(uuid.UUID(bytes=raw, version=4))


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def iso(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(timezone.utc).isoformat()


def parse_time(v: str | datetime | None) -> datetime | None:
    if v is None or isinstance(v, datetime):
        return v if v is None or v.tzinfo else v.replace(tzinfo=timezone.utc)
    t = datetime.fromisoformat(v.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


class State(str, enum.Enum):
    """Canonical job states; site-native states map onto these."""

    READY = "READY"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    INFO = "INFO"
    FINISHING = "FINISHING"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    UNKNOWN = "UNKNOWN"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def rank(self) -> int | None:
        """Progress order; INFO and UNKNOWN carry no progress and never move a job."""
        return _RANK.get(self)


TERMINAL = frozenset({State.COMPLETE, State.FAILED, State.CANCELLED})
_RANK = {State.READY: 0, State.PENDING: 1, State.RUNNING: 2, State.FINISHING: 3,
         State.COMPLETE: 4, State.FAILED: 4, State.CANCELLED: 4}


def advance(current: State | None, new: State) -> State | None:
    """The job's state after ``new`` is reported, given ``current``.

    A job's current state never goes backwards: INFO/UNKNOWN leave it as it is (unless
    there is none yet), a late or out-of-order status is kept in history only, and a
    terminal state is final.
    """
    if current is None:
        return new
    if current.terminal:
        return current
    if new.rank is None:
        return current if current.rank is not None else new
    if current.rank is None or new.rank >= current.rank:
        return new
    return current


class EntryKind(str, enum.Enum):
    """What a job's entry point is."""

    ARGV = "argv"        # ["prog", "arg", ...]
    SHELL = "shell"      # "a | shell && string"
    PYTHON = "python"    # "package.module:function"
    PAYLOAD = "payload"  # a site-specific JSON payload (a circuit, a batch script, ...)
    CIRCUIT = "circuit"  # a quantum circuit (OpenQASM/QPY, shots, primitive): ibm_quantum


class Direction(str, enum.Enum):
    PUT = "put"
    GET = "get"


class _Record:
    """JSON round-trip for the dataclasses below (enums by value, datetimes ISO 8601).
    Fields in ``_OPTIONAL`` are left out while empty: records written before they
    existed stay byte-for-byte what they were."""

    _OPTIONAL: frozenset[str] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if not v and f.name in self._OPTIONAL:
                continue
            if isinstance(v, enum.Enum):
                v = v.value
            elif isinstance(v, datetime):
                v = iso(v)
            elif isinstance(v, (_Record, Retries)):
                v = v.to_dict()
            out[f.name] = v
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]):
        names = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = set(d) - set(names)
        if unknown:
            raise InvalidInput(f"{cls.__name__}: unknown field(s) {sorted(unknown)}")
        kw = {k: cls._coerce(k, v) for k, v in d.items()}
        return cls(**kw)

    @classmethod
    def _coerce(cls, name: str, v: Any) -> Any:
        return v


def check_json(value: Any, what: str) -> None:
    """Refuse what standard JSON cannot hold (NaN, infinity, arbitrary objects) where a
    user hands it in: SQLite would store it, PostgreSQL would refuse it, and no bundle,
    graph or ``--json`` output could carry it."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise InvalidInput(f"{what} must be plain JSON (strings, numbers, booleans, null, "
                           f"lists and objects; not NaN or infinity): {e}") from None


@dataclass
class JobDefn(_Record):
    """What to run and where. ``entry`` is interpreted according to ``kind``.
    ``retries``: a :class:`Retries` (or its count); ``outputs``: metadata patterns of the
    data the job will put, which other jobs can wait for (``JobFuture.outputs``)."""

    entry: str | list[str] | dict[str, Any]
    kind: EntryKind = EntryKind.ARGV
    name: str = ""
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    site: str = "local"
    compute_type: str | None = None
    resources: dict[str, Any] = field(default_factory=dict)
    retries: Retries | None = None
    outputs: list[dict[str, Any]] = field(default_factory=list)
    _OPTIONAL = frozenset({"retries", "outputs"})

    def __post_init__(self) -> None:
        self.kind = EntryKind(self.kind)
        self.retries = Retries.coerce(self.retries)
        if not isinstance(self.outputs, list) or not all(isinstance(o, dict) and o
                                                         for o in self.outputs):
            raise InvalidInput("a job's outputs are a list of non-empty metadata patterns")
        if self.kind is EntryKind.ARGV:
            if isinstance(self.entry, str):
                self.entry = [self.entry]
            if not isinstance(self.entry, list) or not self.entry or not all(
                    isinstance(a, str) for a in self.entry):
                raise InvalidInput("an argv job needs a non-empty list of strings as entry")
            if not self.entry[0].strip():
                raise InvalidInput("an argv job's program (its first word) is empty")
        elif self.kind in (EntryKind.SHELL, EntryKind.PYTHON):
            if not isinstance(self.entry, str) or not self.entry.strip():
                raise InvalidInput(f"a {self.kind.value} job needs a non-empty string entry")
            if self.kind is EntryKind.PYTHON and ":" not in self.entry:
                raise InvalidInput("a python job's entry is 'package.module:function'")
        elif self.kind is EntryKind.CIRCUIT and not isinstance(self.entry, dict):
            raise InvalidInput("a circuit job's entry is a table: {\"qasm\": ...} or "
                               "{\"data\": <data id>}, with shots, primitive, ...")
        if not all(isinstance(a, str) for a in self.args):
            raise InvalidInput("job args must be strings")
        if not self.name:
            self.name = self.display_name()

    def check_plain(self) -> None:
        """Refuse, before anything runs or is recorded, what could not be run and recorded
        the same: parts JSON cannot hold (NaN, objects), and any string that is not UTF-8
        text without NUL (:func:`check_text`), naming the field; env names also cannot
        hold ``=`` (``{"A=B": "c"}`` would give the job ``A=B=c``)."""
        check_json((self.entry, self.env, self.resources, self.outputs), "a job definition")
        entry = "the job's argv" if self.kind is EntryKind.ARGV else "the job's entry"
        check_texts(self.entry, entry)
        check_texts(self.args, "the job's args")
        for k, v in self.env.items():
            if not isinstance(k, str) or not k or "=" in k:
                raise InvalidInput(f"the job's env name {shown(str(k))} is not a variable "
                                   "name (it must be non-empty and hold no '=')")
            check_text(k, "the job's env name")
            if not isinstance(v, str):
                raise InvalidInput(f"the job's env value of {k} must be a string, not {v!r}")
            check_text(v, f"the job's env value of {k}")
        for what, text in (("cwd", self.cwd), ("name", self.name), ("site", self.site),
                           ("compute_type", self.compute_type)):
            if text is not None:
                check_text(text, f"the job's {what}")
        check_texts(self.resources, "the job's resources")

    def display_name(self) -> str:
        return derived_name(self.kind.value, self.entry)


def derived_name(kind: str, entry: Any) -> str:
    """The name a job gets when none is given (from a definition or its stored dict)."""
    if kind == EntryKind.ARGV.value:
        return " ".join(entry)[:80]
    if kind in (EntryKind.PAYLOAD.value, EntryKind.CIRCUIT.value):
        return str(entry.get("name", "payload"))[:80] if isinstance(entry, dict) else "payload"
    return str(entry)[:80]


@dataclass
class JobContext(_Record):
    """Where a job sits in the thread. Ids are UUIDs, unique across instances."""

    job_id: str = field(default_factory=new_id)
    parent_id: str | None = None
    originator_id: str | None = None
    workflow_id: str | None = None
    site: str = "local"
    native_id: str | None = None

    def __post_init__(self) -> None:
        if self.originator_id is None:
            self.originator_id = self.job_id

    def child(self, site: str | None = None) -> "JobContext":
        """The context of a job launched from this one."""
        return JobContext(parent_id=self.job_id, originator_id=self.originator_id,
                          workflow_id=self.workflow_id, site=site or self.site)


@dataclass
class JobStatus(_Record):
    """One status report; a job's history is the list of these."""

    job_id: str
    state: State
    native_state: str | None = None
    info: str | None = None
    time: datetime = field(default_factory=utcnow)
    exit_code: int | None = None

    def __post_init__(self) -> None:
        self.state = State(self.state)
        self.time = parse_time(self.time)  # type: ignore[assignment]


@dataclass
class Job(_Record):
    """A job as the store knows it: definition, context and current state."""

    defn: JobDefn
    context: JobContext
    state: State | None = None
    exit_code: int | None = None
    created: datetime = field(default_factory=utcnow)
    started: datetime | None = None
    ended: datetime | None = None
    triggered_by: str | None = None
    instance_id: str | None = None
    submitter: str | None = None   # the user account that submitted it
    launcher: str | None = None    # the process starting it (see lwfm.starter); a claim
    _OPTIONAL = frozenset({"launcher"})

    @property
    def id(self) -> str:
        return self.context.job_id

    @classmethod
    def _coerce(cls, name: str, v: Any) -> Any:
        if name == "defn" and isinstance(v, Mapping):
            return JobDefn.from_dict(v)
        if name == "context" and isinstance(v, Mapping):
            return JobContext.from_dict(v)
        if name == "state" and v is not None:
            return State(v)
        if name in ("created", "started", "ended"):
            return parse_time(v)
        return v


@dataclass
class Workflow(_Record):
    """A named group of jobs: the unit a user thinks, queries and exports in."""

    name: str = ""
    description: str = ""
    props: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=new_id)
    created: datetime = field(default_factory=utcnow)
    instance_id: str | None = None

    @classmethod
    def _coerce(cls, name: str, v: Any) -> Any:
        return parse_time(v) if name == "created" else v


@dataclass
class DataObject(_Record):
    """A metasheet: one put or get of a piece of data, by a job, on a site.

    ``derived_from`` links a copy to its original (e.g. the remote file an SFTP get
    fetched), so lineage crosses sites.
    """

    url: str
    site: str = "local"
    direction: Direction = Direction.PUT
    metadata: dict[str, Any] = field(default_factory=dict)
    size: int | None = None
    sha256: str | None = None
    media_type: str | None = None
    job_id: str | None = None
    workflow_id: str | None = None
    derived_from: str | None = None
    id: str = field(default_factory=new_id)
    time: datetime = field(default_factory=utcnow)
    instance_id: str | None = None

    def __post_init__(self) -> None:
        self.direction = Direction(self.direction)
        self.time = parse_time(self.time)  # type: ignore[assignment]


class TriggerKind(str, enum.Enum):
    JOB = "job"          # one job reaches one of ``states``
    ALL = "all"          # every job in ``watch`` reaches one of ``states``
    ANY = "any"          # any job in ``watch`` reaches one of ``states``
    DATA = "data"        # a data object whose metadata matches ``pattern`` is put


class TriggerStatus(str, enum.Enum):
    PENDING = "pending"
    FIRED = "fired"
    DEAD = "dead"        # can no longer fire; ``reason`` says why


@dataclass
class Trigger(_Record):
    """Run ``defn`` when a condition holds. Persisted; fires exactly once."""

    kind: TriggerKind
    defn: JobDefn
    watch: list[str] = field(default_factory=list)
    states: list[State] = field(default_factory=lambda: [State.COMPLETE])
    pattern: dict[str, Any] = field(default_factory=dict)
    parent_id: str | None = None
    workflow_id: str | None = None
    id: str = field(default_factory=new_id)
    status: TriggerStatus = TriggerStatus.PENDING
    job_id: str = field(default_factory=new_id)   # the id the fired job will carry
    fired_by: str | None = None                    # job or data id that fired it
    reason: str | None = None
    created: datetime = field(default_factory=utcnow)
    fired_at: datetime | None = None
    instance_id: str | None = None
    deadline: datetime | None = None     # pending past it: dead, reason "timeout"
    at_least: int | None = None          # ALL: fire once this many jobs reach ``states``
    exit_codes: list[int] | None = None  # fire only if the job that fires it exited so
    delay_s: float = 0.0                 # fire no sooner than this after that job ended
    retry_of: str | None = None          # a retry: the logical job (its first attempt)
    attempt: int = 0                     # a retry: the attempt number it starts (2, 3, ...)
    producer: str | None = None          # DATA: only data put by this job (a data future)
    inputs: list[dict[str, Any]] | None = None  # DATA, 2+ data futures: {"pattern", "producer"}
    used: list[str] | None = None        # DATA, fired: the data ids that fed its job, in order
    _OPTIONAL = frozenset({"deadline", "at_least", "exit_codes", "delay_s", "retry_of",
                           "attempt", "producer", "inputs", "used"})

    def __post_init__(self) -> None:
        self.kind = TriggerKind(self.kind)
        self.deadline = parse_time(self.deadline)  # type: ignore[assignment]
        if self.at_least is not None and not 1 <= self.at_least <= len(self.watch):
            raise InvalidInput(f"at_least must be between 1 and the {len(self.watch)} jobs "
                               f"watched, not {self.at_least}")
        self.status = TriggerStatus(self.status)
        self.states = [State(s) for s in self.states]
        if self.inputs:
            self._check_inputs()
        if self.used is not None and not (isinstance(self.used, list)
                                          and all(isinstance(u, str) for u in self.used)):
            raise InvalidInput(f"a trigger's used data must be a list of data ids, "
                               f"not {self.used!r}")
        if self.kind is TriggerKind.DATA and not self.pattern:
            raise InvalidInput("a data trigger needs a metadata pattern")
        if self.kind is not TriggerKind.DATA and not self.watch:
            raise InvalidInput("a job trigger needs at least one job to watch")

    def _check_inputs(self) -> None:
        """Several data inputs: each a non-empty pattern and its producer (or None)."""
        ins = self.inputs or []
        if self.kind is not TriggerKind.DATA or not isinstance(ins, list) or len(ins) < 2 \
                or self.producer is not None:
            raise InvalidInput("inputs are for a data trigger waiting for two or more data, "
                               "each with its producer (one input: give pattern and producer)")
        for n, i in enumerate(ins):
            if not (isinstance(i, Mapping) and set(i) <= {"pattern", "producer"}
                    and isinstance(i.get("pattern"), Mapping) and i["pattern"]
                    and (i.get("producer") is None or isinstance(i["producer"], str))):
                raise InvalidInput(f"data input {n + 1} must be {{'pattern': {{...}} (not "
                                   f"empty), 'producer': job id or None}}, not {i!r}")
        if self.pattern and self.pattern != ins[0]["pattern"]:
            raise InvalidInput("a data trigger with inputs keeps the first one's as its pattern")
        self.pattern = dict(ins[0]["pattern"])

    def data_inputs(self) -> list[tuple[dict[str, Any], str | None]]:
        """What a DATA trigger waits for, in input order: (metadata pattern, the job that
        must put it or None). The one place that reads ``inputs`` / ``pattern``."""
        if self.inputs:
            return [(dict(i["pattern"]), i.get("producer")) for i in self.inputs]
        return [(self.pattern, self.producer)]

    @property
    def feeds_job(self) -> bool:
        """Its job is fed the data it waited for (data futures): the thread records
        ``prov:used`` for each, not only that the data fired it."""
        return self.kind is TriggerKind.DATA and bool(self.inputs or self.producer)

    @classmethod
    def _coerce(cls, name: str, v: Any) -> Any:
        if name == "defn" and isinstance(v, Mapping):
            return JobDefn.from_dict(v)
        if name in ("created", "fired_at"):
            return parse_time(v)
        return v


@dataclass
class LogRecord(_Record):
    message: str
    level: str = "INFO"
    job_id: str | None = None
    workflow_id: str | None = None
    time: datetime = field(default_factory=utcnow)

    def __post_init__(self) -> None:
        self.time = parse_time(self.time)  # type: ignore[assignment]
