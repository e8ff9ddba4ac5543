"""What must hold of a store after ANY accepted write, an import of a hostile bundle included.

``problems(store)`` lists every broken invariant (empty when all hold); the fuzzers call
it after each bundle the importer accepts. References that only make sense with their
target (a status's job, metadata's data, a trigger's watch rows, a bundle's items) must
resolve; lineage links (parent, derived_from, a data item's job) may name a record of
another instance that is not here (yet), by design.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import select

from lwfm.model import State, advance
from lwfm.secrets import REDACTED, SECRET_NAME
from lwfm.store import Store, t

_STATES = {s.value for s in State}
_TABLE_OF = {"workflow": t.workflows, "job": t.jobs, "data": t.data, "trigger": t.triggers}


def _secret_values(env: Any, where: str) -> list[str]:
    if not isinstance(env, dict):
        return []
    return [f"{where}: env {k} is stored in clear" for k, v in env.items()
            if SECRET_NAME.search(k) and v != REDACTED]


def problems(store: Store) -> list[str]:
    out: list[str] = []
    with store.read() as c:
        ids = {k: set(c.execute(select(tb.c.id)).scalars()) for k, tb in _TABLE_OF.items()}
        jobs = list(c.execute(select(t.jobs)).mappings())
        hist: dict[str, list[str]] = defaultdict(list)
        for r in c.execute(select(t.statuses).order_by(t.statuses.c.seq)).mappings():
            if r["state"] not in _STATES:
                out.append(f"status {r['seq']}: state {r['state']!r}")
            if r["job_id"] not in ids["job"]:
                out.append(f"status {r['seq']}: of a job not in the store ({r['job_id']})")
            hist[r["job_id"]].append(r["state"])
        for r in jobs:
            w = f"job {r['id']}"
            try:
                job = Store.job_from_row(r)
            except Exception as e:   # noqa: BLE001 - any failure to load is the finding
                out.append(f"{w}: does not load ({type(e).__name__}: {e})")
                continue
            out += _secret_values(job.defn.env, w)
            h = hist.get(r["id"], [])
            if h:
                state = None
                for s in h:
                    if s in _STATES:
                        state = advance(state, State(s))
                # what the history comes to, or an end state it reports (a conflict an
                # import resolved for the bundle keeps both end states)
                if job.state != state and not (job.state and job.state.terminal and
                                               job.state.value in h):
                    out.append(f"{w}: state {r['state']} but its history {h} gives "
                               f"{state and state.value}")
        for r in c.execute(select(t.data_meta.c.data_id).distinct()).scalars():
            if r not in ids["data"]:
                out.append(f"metadata of data {r} not in the store")
        for r in c.execute(select(t.triggers)).mappings():
            w = f"trigger {r['id']}"
            try:
                tr = store._trigger(r)   # as every reader of the store loads it
            except Exception as e:   # noqa: BLE001
                out.append(f"{w}: does not load ({type(e).__name__}: {e})")
                continue
            out += _secret_values(tr.defn.env, w)
            if tr.id != r["id"] or tr.job_id != r["job_id"] or tr.kind.value != r["kind"]:
                out.append(f"{w}: row and body disagree")
        for r in c.execute(select(t.trigger_watch)).mappings():
            if r["trigger_id"] not in ids["trigger"]:
                out.append(f"watch of trigger {r['trigger_id']} not in the store")
        bundles = set(c.execute(select(t.bundles.c.id)).scalars())
        for r in c.execute(select(t.bundle_items)).mappings():
            if r["bundle_id"] not in bundles:
                out.append(f"item of bundle {r['bundle_id']} not in the store")
            elif r["kind"] in ids and r["ref"] not in ids[r["kind"]]:
                out.append(f"bundle {r['bundle_id']} brought {r['kind']} {r['ref']}: not in the store")
    return out
