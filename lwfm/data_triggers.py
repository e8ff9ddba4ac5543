"""When a data trigger fires: the puts it waits for, read from the store each time.

A data trigger waits for one or more inputs, each a metadata pattern and (for a data
future) the job that must put it. Nothing about progress is kept in memory: each
evaluation asks the store which inputs have a matching put, so a restart, or another
process, reaches the same verdict, and the ``fire_trigger`` claim fires it once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from .model import DataObject, State, Trigger
from .store import Store, field_matches


def put_matches(pattern: dict[str, Any], producer: str | None, d: DataObject,
                store: Store | None = None) -> bool:
    """A put whose metadata matches every field of ``pattern`` and (for a data future)
    put by ``producer`` or one of its retries."""
    if d.direction.value != "put" or not all(
            field_matches(d.metadata, k, want) for k, want in pattern.items()):
        return False
    if producer is None or d.job_id == producer:
        return True
    if store is None or d.job_id is None:
        return False
    by = store.trigger_for_job(d.job_id)
    return by is not None and by.retry_of == producer


def data_matches(tr: Trigger, d: DataObject, store: Store | None = None) -> bool:
    """``d`` is a put one of the trigger's inputs waits for."""
    return any(put_matches(p, prod, d, store) for p, prod in tr.data_inputs())


def first_put(store: Store, pattern: dict[str, Any], producer: str | None) -> DataObject | None:
    """The earliest put matching an input: what a data future resolves to."""
    for d in store.find_data(pattern):
        if put_matches(pattern, producer, d, store):
            return d
    return None


@dataclass
class DataVerdict:
    """``fire`` (with the data that fired it and every input's data, in input order),
    ``dead`` (with the reason) or ``wait``."""

    verdict: str
    fired_by: str | None = None
    used: list[DataObject] | None = None
    reason: str | None = None


def decide_data(tr: Trigger, store: Store,
                states: Callable[[Iterable[str]], dict[str, State | None]],
                fresh: DataObject | None = None) -> DataVerdict:
    """Whether every input has its put. ``fresh``: a put just recorded (it fires the
    trigger if it completes the set); ``states``: the producers' logical states (a job
    with retries has ended only once no retry is due), asked only for inputs still
    missing: a producer that ended without putting its input never will."""
    used: list[DataObject | None] = []
    for pattern, producer in tr.data_inputs():
        if fresh is not None and put_matches(pattern, producer, fresh, store):
            used.append(fresh)
        else:
            used.append(first_put(store, pattern, producer))
    if all(d is not None for d in used):
        got = [d for d in used if d is not None]
        last = fresh if fresh is not None and fresh in got else max(got, key=lambda d: d.time)
        return DataVerdict("fire", fired_by=last.id, used=got)
    missing = [(p, prod) for (p, prod), d in zip(tr.data_inputs(), used)
               if d is None and prod is not None]
    ended = states([prod for _, prod in missing]) if missing else {}
    for pattern, producer in missing:
        s = ended.get(producer)  # type: ignore[arg-type]
        if s is not None and s.terminal:
            # A job's puts are committed before its end: a put made after the look above,
            # just before the job ended, is seen now (and may complete the set).
            if first_put(store, pattern, producer) is not None:
                return decide_data(tr, store, states, fresh)
            return DataVerdict("dead", reason=f"job {producer} ended {s.value} without "
                                              f"putting data matching {pattern}")
    return DataVerdict("wait")

