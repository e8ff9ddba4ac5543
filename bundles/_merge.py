"""Merge incoming rows into the store: identity by id, joins, conflicts, bulk writes.

A record already known locally (e.g. a job launched from here on a remote site,
which the remote instance recorded under the same id) stays one record: missing
fields are filled in, statuses not yet present are appended, and the job's state
advances as ``lwfm.model.advance`` allows. Contradicting single-valued facts (two
terminal states, two exit codes, two checksums, ...) are conflicts.
"""

from __future__ import annotations

import queue
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from lwfm.errors import BundleError, LwfmError
from lwfm.model import State, advance
from lwfm.store import Store, t
from lwfm.store.sql import DeferredIndexes, strict_json

from ._common import Conflict
from ._reader import Incoming
from ._select import fetch_in

IMPORTED_MARK = "imported from lwfm instance {}: it fires only at its origin"
_JOB_FILL = ("parent_id", "originator_id", "workflow_id", "native_id", "started", "ended",
             "triggered_by", "exit_code")
_DATA_CONFLICT = ("url", "direction", "sha256", "size")
_SETTLE = ("status", "fired_by", "reason", "fired_at")
_DATA_FILL = ("sha256", "size", "media_type", "job_id", "workflow_id", "derived_from")


@dataclass
class Plan:
    inserts: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {
        k: [] for k in ("workflow", "job", "status", "data", "data_meta", "trigger", "watch")})
    updates: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: {
        k: {} for k in ("workflow", "job", "data", "trigger")})
    meta_replace: list[dict[str, str]] = field(default_factory=list)
    crate_new: list[dict[str, str]] = field(default_factory=list)      # crate_nodes rows
    crate_grown: list[dict[str, str]] = field(default_factory=list)    # rows with more triples
    triples_added: int = 0
    conflicts: list[Conflict] = field(default_factory=list)
    unchanged: Counter = field(default_factory=Counter)
    resolution: str = "kept local"   # what a conflict comes to: "theirs" or "kept local"

    def added(self) -> dict[str, int]:
        out = {k: len(self.inserts[k]) for k in ("workflow", "job", "status", "data", "trigger")}
        out["triples"] = self.triples_added
        return out

    def updated(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.updates.items()}

    @property
    def empty(self) -> bool:
        return not any(self.added().values()) and not any(self.updated().values())


def _existing(c: Connection, table: Any, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in fetch_in(c, table, "id", sorted(set(ids)))}


def _status_key(s: dict[str, Any]) -> tuple:
    return (s["state"], s["native_state"], s["info"], s["time"], s["exit_code"])


def plan_merge(c: Connection, inc: Incoming, mode: str) -> Plan:
    """Compare the bundle with the store, inside the caller's transaction."""
    p = Plan()
    theirs_wins = mode == "theirs"
    p.resolution = "theirs" if theirs_wins else "kept local"
    for w in _merge_rows(c, t.workflows, inc.workflows, p, "workflow"):
        L, T = w
        upd = {k: T[k] for k in ("name", "description") if not L[k] and T[k]}
        props = {**T["props"], **L["props"]}
        if props != L["props"]:
            upd["props"] = props
        _record_update(p, "workflow", L["id"], upd)
    local_jobs = _existing(c, t.jobs, (j["id"] for j in inc.jobs))
    local_hist: dict[str, Counter] = {}
    for r in fetch_in(c, t.statuses, "job_id", sorted(local_jobs)):
        local_hist.setdefault(r["job_id"], Counter())[_status_key(r)] += 1
    for T in inc.jobs:
        L = local_jobs.get(T["id"])
        sts = inc.statuses.get(T["id"], [])
        if L is None:
            p.inserts["job"].append(T)
            for s in sts:   # rows fresh from the bundle: tag them in place
                s["job_id"] = T["id"]
            p.inserts["status"] += sts
            continue
        kept_state = _merge_job(L, T, p, theirs_wins)
        have = local_hist.get(T["id"], Counter())
        for s in sts:
            k = _status_key(s)
            if have[k] > 0:
                have[k] -= 1
                continue
            st = State(s["state"])
            if kept_state is not None and st.terminal and st.value != kept_state:
                continue  # 'keep' refused this contradicting end state
            p.inserts["status"].append({"job_id": T["id"], **s})
    _plan_data(c, inc, p, theirs_wins)
    _plan_triggers(c, inc, p, theirs_wins)
    _plan_crates(c, inc, p)
    return p


def _plan_crates(c: Connection, inc: Incoming, p: Plan) -> None:
    """A crate's triples only ever grow: a subject's row gains the triples it lacks."""
    by_crate: dict[str, dict[str, dict[str, str]]] = {}
    for r in inc.crate_nodes:
        have = by_crate.setdefault(r["crate_id"], {}).get(r["subject"])
        if have is not None:   # two rows for one subject (two crates' exports merged)
            have["triples"] = "\n".join(dict.fromkeys(have["triples"].split("\n") +
                                                      r["triples"].split("\n")))
        else:
            by_crate[r["crate_id"]][r["subject"]] = dict(r)
    for cid, rows in sorted(by_crate.items()):
        local = {r["subject"]: r["triples"] for r in fetch_in(
            c, t.crate_nodes, "crate_id", [cid], cols=("subject", "triples"))}
        for subj, r in rows.items():
            old = local.get(subj)
            if old is None:
                p.crate_new.append(r)
                p.triples_added += r["triples"].count("\n") + 1
                continue
            have = old.split("\n")
            known = set(have)
            more = [ln for ln in dict.fromkeys(r["triples"].split("\n")) if ln not in known]
            if more:
                p.crate_grown.append({"crate_id": cid, "subject": subj,
                                      "triples": "\n".join(have + more)})
                p.triples_added += len(more)
            else:
                p.unchanged["crate_node"] += 1


def _merge_rows(c: Connection, table: Any, rows: list[dict[str, Any]], p: Plan, kind: str):
    local = _existing(c, table, (r["id"] for r in rows))
    for T in rows:
        L = local.get(T["id"])
        if L is None:
            p.inserts[kind].append(T)
        else:
            yield L, T


def _record_update(p: Plan, kind: str, id_: str, upd: dict[str, Any]) -> None:
    if upd:
        p.updates[kind][id_] = upd
    else:
        p.unchanged[kind] += 1


def _merge_job(L: dict[str, Any], T: dict[str, Any], p: Plan, theirs_wins: bool) -> str | None:
    """Plan the update of one known job; returns the state 'keep' protects, if any."""
    ls = State(L["state"]) if L["state"] else None
    ts = State(T["state"]) if T["state"] else None
    found = []
    if ls and ts and ls.terminal and ts.terminal and ls != ts:
        found.append(("state", L["state"], T["state"]))
    if L["exit_code"] is not None and T["exit_code"] is not None and L["exit_code"] != T["exit_code"]:
        found.append(("exit_code", L["exit_code"], T["exit_code"]))
    p.conflicts += [Conflict("job", T["id"], f, lv, tv, p.resolution) for f, lv, tv in found]
    upd: dict[str, Any] = {}
    if found and theirs_wins:
        upd.update(state=T["state"], exit_code=T["exit_code"], ended=T["ended"] or L["ended"])
    elif not found and ts is not None:
        new = advance(ls, ts)
        if new != ls and new is not None:
            upd["state"] = new.value
            if new.terminal:
                upd.update(ended=T["ended"], exit_code=T["exit_code"])
    for k in _JOB_FILL:
        if found and not theirs_wins and k in ("exit_code", "ended"):
            continue
        if L[k] is None and T[k] is not None and k not in upd:
            upd[k] = T[k]
    upd = {k: v for k, v in upd.items() if L[k] != v}
    _record_update(p, "job", L["id"], upd)
    return L["state"] if found and not theirs_wins else None


def _meta_rows(data_id: str, md: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        return Store.meta_rows_for(data_id, md)
    except LwfmError as e:  # e.g. a key the store cannot index
        raise BundleError(f"data {data_id}: {e}") from None


def _plan_data(c: Connection, inc: Incoming, p: Plan, theirs_wins: bool) -> None:
    res = p.resolution
    for L, T in _merge_rows(c, t.data, inc.data, p, "data"):
        upd: dict[str, Any] = {}
        for k in _DATA_CONFLICT:
            if L[k] is not None and T[k] is not None and L[k] != T[k]:
                p.conflicts.append(Conflict("data", T["id"], k, L[k], T[k], res))
                if theirs_wins:
                    upd[k] = T[k]
        for k in _DATA_FILL:
            if L[k] is None and T[k] is not None:
                upd[k] = T[k]
        md = dict(L["metadata"])
        for k, v in T["metadata"].items():
            if k not in md:
                md[k] = v
                p.inserts["data_meta"] += _meta_rows(L["id"], {k: v})
            elif md[k] != v:
                p.conflicts.append(Conflict("data", T["id"], f"metadata.{k}", md[k], v, res))
                if theirs_wins:
                    md[k] = v
                    p.meta_replace.append({"data_id": L["id"], "key": str(k)})
                    p.inserts["data_meta"] += _meta_rows(L["id"], {k: v})
        if md != L["metadata"]:
            upd["metadata"] = md
        _record_update(p, "data", L["id"], upd)
    for d in p.inserts["data"]:
        p.inserts["data_meta"] += _meta_rows(d["id"], d["metadata"])


def _plan_triggers(c: Connection, inc: Incoming, p: Plan, theirs_wins: bool) -> None:
    mark = IMPORTED_MARK.format(inc.origin)
    rows = []
    for tr in inc.triggers:
        row = {k: v for k, v in tr.items() if k != "watch"}
        if row["status"] == "pending":
            # A trigger pending at its origin must not fire here too; a later bundle settles it.
            row.update(status="dead", reason=mark)
        rows.append(row)
    watch = {tr["id"]: tr["watch"] for tr in inc.triggers}
    for L, T in _merge_rows(c, t.triggers, rows, p, "trigger"):
        upd: dict[str, Any] = {}
        settled = T["reason"] != mark
        if L["reason"] == mark and settled:
            upd = {k: T[k] for k in _SETTLE + ("body",)}
        elif settled and L["reason"] != mark and L["status"] != "pending" and \
                (L["status"], L["fired_by"]) != (T["status"], T["fired_by"]):
            p.conflicts.append(Conflict("trigger", T["id"], "status", L["status"], T["status"],
                                        p.resolution))
            if theirs_wins:
                upd = {k: T[k] for k in _SETTLE}
        elif settled and L["status"] == "pending" and T["status"] != "pending":
            upd = {k: T[k] for k in _SETTLE}
        _record_update(p, "trigger", L["id"], {k: v for k, v in upd.items() if L[k] != v})
    for row in p.inserts["trigger"]:
        p.inserts["watch"] += [{"trigger_id": row["id"], "job_id": j} for j in watch[row["id"]]]


_TABLES = {"workflow": t.workflows, "job": t.jobs, "data": t.data, "trigger": t.triggers}


def apply_plan(c: Connection, store: Store, p: Plan,
               ix: DeferredIndexes | None = None) -> list[dict[str, str]]:
    """Write the plan with bulk statements; returns the (kind, ref) items for bundle_items.

    ``ix``: the indexes of the tables the whole import fills, built once at its end."""
    ix = ix or DeferredIndexes(c, False)
    items: list[dict[str, str]] = []
    for kind in ("workflow", "job", "data", "trigger"):
        rows = p.inserts[kind]
        ix.before_insert(_TABLES[kind], len(rows))
        bulk_insert(c, store, _TABLES[kind], rows)
        for id_, upd in sorted(p.updates[kind].items()):
            c.execute(update(_TABLES[kind]).where(_TABLES[kind].c.id == id_).values(**upd))
        refs = [r["id"] for r in rows] + sorted(p.updates[kind])
        store.journal(c, kind, refs)
        items += [{"kind": kind, "ref": r} for r in refs]
    if p.meta_replace:
        ix.restore(t.data_meta)   # the deletes find their rows by index
    for m in p.meta_replace:
        c.execute(delete(t.data_meta).where(t.data_meta.c.data_id == m["data_id"],
                                            t.data_meta.c.key == m["key"]))
    for table, rows in ((t.data_meta, p.inserts["data_meta"]), (t.trigger_watch, p.inserts["watch"]),
                        (t.crate_nodes, p.crate_new)):
        ix.before_insert(table, len(rows))
        bulk_insert(c, store, table, rows)
    if p.crate_grown:
        ix.restore(t.crate_nodes)
    for r in p.crate_grown:
        c.execute(update(t.crate_nodes).where(t.crate_nodes.c.crate_id == r["crate_id"],
                                              t.crate_nodes.c.subject == r["subject"])
                  .values(triples=r["triples"]))
    crates = sorted({r["crate_id"] for r in p.crate_new + p.crate_grown})
    store.journal(c, "crate", crates)
    items += [{"kind": "crate", "ref": cid} for cid in crates]
    ix.before_insert(t.statuses, len(p.inserts["status"]))
    store.journal(c, "status", _insert_statuses(c, store, p.inserts["status"]))
    return items   # statuses come with their jobs: bundle_items names records only


def bulk_insert(c: Connection, store: Store, table: Any, rows: list[dict[str, Any]]) -> None:
    """Every insert of an import goes through here (the seam the atomicity test breaks).
    A bundle's values hold no NaN (its JSON parser refuses them): strict JSON columns."""
    store.insert_many(c, table, rows, strict_json)


def _insert_statuses(c: Connection, store: Store, rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    if store.sqlite:
        # BEGIN IMMEDIATE holds the write lock: explicit seqs after the current max are ours.
        base = int(c.execute(select(func.coalesce(func.max(t.statuses.c.seq), 0))).scalar_one())
        for i, r in enumerate(rows, 1):
            r["seq"] = base + i
        bulk_insert(c, store, t.statuses, rows)
        return [str(base + i) for i in range(1, len(rows) + 1)]
    res = c.execute(insert(t.statuses).returning(t.statuses.c.seq, sort_by_parameter_order=True), rows)
    return [str(s) for s in res.scalars()]


class Merger:
    """Merges batches of incoming rows inside one transaction; counts what it did.

    Planning reads the store as it was before the import (``r``, a separate read
    connection: every record occurs once in a bundle, so batches never depend on each
    other), while a writer thread applies the previous batch on the write connection
    ``c`` -- SQLite releases the GIL while it inserts, so parsing and writing overlap.
    With ``fail``, once a conflict shows up nothing more is written (the caller then
    raises and the transaction rolls back), but planning goes on so the report lists
    every conflict. A dry run only plans.
    """

    def __init__(self, c: Connection, r: Connection, store: Store, mode: str, dry_run: bool,
                 bundle_id: str):
        self.c, self.r, self.store, self.mode = c, r, store, mode
        self.dry_run, self.bundle_id = dry_run, bundle_id
        self.added: Counter = Counter()
        self.updated: Counter = Counter()
        self.unchanged: Counter = Counter()
        self.conflicts: list[Conflict] = []
        self._queue: queue.Queue = queue.Queue(maxsize=2)
        self._writer: threading.Thread | None = None
        self._error: BaseException | None = None
        self.indexes = DeferredIndexes(c, store.sqlite and not dry_run)

    @property
    def refusing(self) -> bool:
        return self.mode == "fail" and bool(self.conflicts)

    def merge(self, inc: Incoming) -> None:
        plan = plan_merge(self.r, inc, self.mode)
        self.conflicts += plan.conflicts
        self.added.update(plan.added())
        self.updated.update(plan.updated())
        self.unchanged.update(plan.unchanged)
        if self.dry_run or self.refusing or plan.empty:
            return
        if self._writer is None:
            self._writer = threading.Thread(target=self._drain, name="lwfm-import-writer", daemon=True)
            self._writer.start()
        self._queue.put(plan)
        if self._error is not None:
            self.wait()

    def settle(self, tables: Iterable[Any]) -> None:
        """No more rows come for ``tables``: the writer builds their deferred indexes next,
        in SQLite (without the GIL), while this thread still reads the last batches."""
        if self._writer is not None:
            self._queue.put(list(tables))

    def _drain(self) -> None:
        while (plan := self._queue.get()) is not None:
            if self._error is not None:
                continue   # keep consuming so the producer never blocks; wait() re-raises
            try:
                if isinstance(plan, list):   # from settle()
                    for table in plan:
                        self.indexes.restore(table)
                    continue
                items = apply_plan(self.c, self.store, plan, self.indexes)
                self.indexes.before_insert(t.bundle_items, len(items))
                bulk_insert(self.c, self.store, t.bundle_items,
                            [{"bundle_id": self.bundle_id, **it} for it in items])
            except BaseException as e:  # handed to the importing thread by wait()
                self._error = e

    def wait(self) -> None:
        """Let the writer finish what it was given; re-raise its failure here."""
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join()
            self._writer = None
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def finish(self) -> None:
        """After the last :meth:`wait`: the indexes the writes deferred, built (on ``c``)."""
        self.indexes.restore()

    @property
    def changed(self) -> bool:
        return any(self.added.values()) or any(self.updated.values())
