"""Triggers: a job definition run once, when a job, a set of jobs or a data put makes
its condition hold. Persisted, so a restart does not lose them."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

from ..errors import InvalidInput
from ._base import _Record, new_id, parse_time, utcnow
from ._jobs import JobDefn
from ._states import State


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
