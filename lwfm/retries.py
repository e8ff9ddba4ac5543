"""A job's retry policy (``JobDefn.retries``). Stdlib-only, as the model is: a site
driver in a foreign virtualenv imports it. How retries run: :mod:`lwfm.retry`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import InvalidInput

_ENDS = ("COMPLETE", "FAILED", "CANCELLED")


@dataclass
class Retries:
    """Run a job again when it ends in one of ``states`` (and, if given, with one of
    ``exit_codes``), at most ``count`` more times, waiting ``backoff_s`` (times
    ``factor`` per further attempt): a flaky node should not end a workflow."""

    count: int = 0
    backoff_s: float = 0.0
    factor: float = 1.0
    states: list[str] = field(default_factory=lambda: ["FAILED"])
    exit_codes: list[int] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 0:
            raise InvalidInput(f"retries count must be a whole number >= 0, not {self.count!r}")
        if self.backoff_s < 0 or self.factor < 1:
            raise InvalidInput("retries backoff_s must be >= 0 and factor >= 1")
        self.states = [str(getattr(s, "value", s)).upper() for s in self.states]
        if not self.states or not all(s in _ENDS for s in self.states):
            raise InvalidInput(f"retries states must be end states ({', '.join(_ENDS)}), "
                               f"not {self.states}")

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt number ``attempt`` (2 is the first retry)."""
        return self.backoff_s * self.factor ** max(0, attempt - 2)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def coerce(cls, value: Any) -> "Retries | None":
        """A policy from what a JobDefn is given: a Retries, its dict, or a count."""
        if value is None or isinstance(value, Retries):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return cls(count=value) if value else None
        if isinstance(value, Mapping):
            unknown = set(value) - {f.name for f in dataclasses.fields(cls)}
            if unknown:
                raise InvalidInput(f"Retries: unknown field(s) {sorted(unknown)}")
            return cls(**value)
        raise InvalidInput(f"retries must be a count or a Retries, not {value!r}")
