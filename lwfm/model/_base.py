"""What every record of the model shares: globally unique ids, UTC times in ISO 8601, and
the JSON round trip (``_Record``) with its guard against what JSON cannot hold."""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import threading
import uuid
from datetime import datetime, timezone
from typing import Any, Mapping

from ..errors import InvalidInput
from ..retries import Retries


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


class _Record:
    """JSON round-trip for the model's dataclasses (enums by value, datetimes ISO 8601).
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
