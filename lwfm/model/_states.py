"""A job's canonical states and the one rule for how its current state moves
(``advance``), which the store, the recorder and bundle merges all follow."""

from __future__ import annotations

import enum


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
