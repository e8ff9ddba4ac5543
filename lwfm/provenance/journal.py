"""The projector's position in the SQL events journal, kept next to the graph.

The watermark lives with the graph, not in SQL, because it describes the graph: delete
or restore the graph directory and its state goes with it, while the SQL store (the
source of truth) never has to know a projection exists.

PostgreSQL hands out ``events.seq`` values when a row is inserted but makes them visible
when the transaction commits, so seq 12 can become visible after seq 13 was already
applied. The projector therefore remembers the holes below its watermark (as seq ranges
with the time they were first seen) and re-reads them on every sync until they fill or
are older than ``GAP_TTL`` — far longer than any lwfm write transaction, a bundle import
included. Holes that never fill (rolled-back transactions) just expire. Re-applying an
event is harmless: applying it re-projects the *current* rows it names.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import and_, or_, select

from ..store import schema as t

GAP_TTL = 600.0          # seconds a hole in the seq sequence is watched for
MAX_GAPS = 1000          # ranges kept at most (oldest dropped first)
STATE_VERSION = 1


@dataclass
class JournalState:
    instance_id: str
    watermark: int = 0
    gaps: list[list[float]] = field(default_factory=list)   # [lo, hi, first_seen]

    @classmethod
    def load(cls, path: Path, instance_id: str) -> "JournalState | None":
        """The saved state, or None when absent, unreadable or for another store."""
        try:
            d = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if d.get("version") != STATE_VERSION or d.get("instance_id") != instance_id:
            return None
        return cls(instance_id=instance_id, watermark=int(d["watermark"]),
                   gaps=[[int(a), int(b), float(c)] for a, b, c in d.get("gaps", [])])

    def save(self, path: Path) -> None:
        """Atomic replace, so a crash leaves the old or the new state, never half."""
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"version": STATE_VERSION, "instance_id": self.instance_id,
                                   "watermark": self.watermark, "gaps": self.gaps}))
        os.replace(tmp, path)

    # -- reading the journal --------------------------------------------------------------
    def pending_query(self, limit: int):
        """Events past the watermark, plus any that appeared in remembered holes."""
        cond = t.events.c.seq > self.watermark
        if self.gaps:
            cond = or_(cond, *[and_(t.events.c.seq >= int(lo), t.events.c.seq <= int(hi))
                               for lo, hi, _ in self.gaps])
        return (select(t.events.c.seq, t.events.c.kind, t.events.c.ref).where(cond)
                .order_by(t.events.c.seq).limit(limit))

    def advance(self, seqs: list[int], now: float | None = None) -> None:
        """Record that ``seqs`` (ascending) were applied; note new holes, fill old ones."""
        now = time.time() if now is None else now
        seen = set(seqs)
        gaps: list[list[float]] = []
        for lo, hi, first in self.gaps:   # split remembered holes around filled seqs
            if now - first > GAP_TTL:
                continue
            start = int(lo)
            for s in sorted(x for x in seen if lo <= x <= hi):
                if s > start:
                    gaps.append([start, s - 1, first])
                start = s + 1
            if start <= hi:
                gaps.append([start, int(hi), first])
        prev = self.watermark
        for s in seqs:
            if s > prev:
                if s > prev + 1:
                    gaps.append([prev + 1, s - 1, now])
                prev = s
        self.watermark = prev
        self.gaps = sorted(gaps)[-MAX_GAPS:]
