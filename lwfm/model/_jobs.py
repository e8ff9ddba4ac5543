"""What to run (``JobDefn``) and what the store keeps of a run: its place in the thread,
its status reports, the job itself, the workflow it belongs to and its log lines."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

from ..errors import InvalidInput
from ..retries import Retries
from ..text import check_text, check_texts, shown
from ._base import _Record, check_json, new_id, parse_time, utcnow
from ._states import State


class EntryKind(str, enum.Enum):
    """What a job's entry point is."""

    ARGV = "argv"        # ["prog", "arg", ...]
    SHELL = "shell"      # "a | shell && string"
    PYTHON = "python"    # "package.module:function"
    PAYLOAD = "payload"  # a site-specific JSON payload (a circuit, a batch script, ...)
    CIRCUIT = "circuit"  # a quantum circuit (OpenQASM/QPY, shots, primitive): ibm_quantum


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
class LogRecord(_Record):
    message: str
    level: str = "INFO"
    job_id: str | None = None
    workflow_id: str | None = None
    time: datetime = field(default_factory=utcnow)

    def __post_init__(self) -> None:
        self.time = parse_time(self.time)  # type: ignore[assignment]
