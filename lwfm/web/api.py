"""The reads behind every page, as plain JSON-ready dicts (the routes only serialize).

The jobs listing is keyset-paginated on ``(created, id)``, newest first: the first page
of 100,000 jobs reads 50 rows through the ``created`` index, and a later page starts
where the last one ended instead of counting past an OFFSET. Nothing here writes;
the one action (cancel) is the Manager's own verb.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_, select

from ..errors import InvalidInput, LwfmError, NotFound
from ..model import State, parse_time
from ..store import Store, chunks, t

PAGE = 50
LOG_TAIL = 64 * 1024
_LIST_COLS = (t.jobs.c.id, t.jobs.c.name, t.jobs.c.site, t.jobs.c.state, t.jobs.c.exit_code,
              t.jobs.c.workflow_id, t.jobs.c.parent_id, t.jobs.c.created, t.jobs.c.started,
              t.jobs.c.ended, t.jobs.c.triggered_by, t.jobs.c.instance_id)


@dataclass
class JobFilter:
    workflow: str | None = None    # full workflow id
    site: str | None = None
    state: str | None = None
    since: str | None = None       # ISO time: created at or after
    until: str | None = None       # ISO time: created before

    def __post_init__(self) -> None:
        if self.state is not None:
            try:
                self.state = State(self.state.upper()).value
            except ValueError:
                raise InvalidInput(f"unknown state {self.state!r}; one of "
                                   f"{', '.join(s.value for s in State)}") from None
        for name in ("since", "until"):
            v = getattr(self, name)
            if v is not None:
                try:
                    setattr(self, name, parse_time(v).isoformat())  # type: ignore[union-attr]
                except (TypeError, ValueError):
                    raise InvalidInput(f"{name}={v!r} is not an ISO 8601 time") from None


def _cursor(row: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(f"{row['created']}|{row['id']}".encode()).decode()


def _uncursor(text: str) -> tuple[str, str]:
    try:
        raw = base64.b64decode(text.encode(), altchars=b"-_", validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        raw = ""
    created, sep, jid = raw.partition("|")
    if not (created and sep and jid):
        raise InvalidInput("a bad page cursor: use the 'next' value a page gave")
    return created, jid


def jobs_page(store: Store, f: JobFilter, after: str | None = None,
              limit: int = PAGE) -> dict[str, Any]:
    """One page of jobs, newest first, and the cursor of the next page (None: the end)."""
    if not 1 <= limit <= 500:
        raise InvalidInput("limit is between 1 and 500")
    q = select(*_LIST_COLS)
    for col, v in (("workflow_id", f.workflow), ("site", f.site), ("state", f.state)):
        if v is not None:
            q = q.where(t.jobs.c[col] == v)
    if f.since:
        q = q.where(t.jobs.c.created >= f.since)
    if f.until:
        q = q.where(t.jobs.c.created < f.until)
    if after:
        created, jid = _uncursor(after)
        q = q.where(or_(t.jobs.c.created < created,
                        and_(t.jobs.c.created == created, t.jobs.c.id < jid)))
    q = q.order_by(t.jobs.c.created.desc(), t.jobs.c.id.desc()).limit(limit + 1)
    with store.read() as c:
        rows = [dict(r) for r in c.execute(q).mappings()]
    more = len(rows) > limit
    rows = rows[:limit]
    return {"jobs": rows, "next": _cursor(rows[-1]) if more else None}


def job_rows(store: Store, job_ids: list[str]) -> list[dict[str, Any]]:
    """The listing rows of these jobs (for live updates)."""
    out: list[dict[str, Any]] = []
    with store.read() as c:
        for ch in chunks(job_ids):
            out.extend(dict(r) for r in c.execute(select(*_LIST_COLS).where(t.jobs.c.id.in_(ch)))
                       .mappings())
    return out


def job_detail(m: Any, job_id: str) -> dict[str, Any]:
    """A job's definition (secrets already redacted in its row), status history, log
    tail, data in and out, the trigger that started it and the triggers waiting on it."""
    store: Store = m.store
    with store.read() as c:
        row = c.execute(select(t.jobs).where(t.jobs.c.id == job_id)).mappings().first()
    fired = store.trigger_for_job(job_id)
    if row is None and fired is None:
        raise NotFound(f"no job with id {job_id!r}")
    out: dict[str, Any] = {"id": job_id, "job": None, "history": [], "data": [],
                           "started_by": fired.to_dict() if fired else None,
                           "waiting": [tr.to_dict() for tr in store.triggers(watching=job_id)]}
    if row is not None:
        out["job"] = {k: v for k, v in dict(row).items()}
        out["history"] = [s.to_dict() for s in store.history(job_id)]
        out["data"] = [d.to_dict() for d in store.find_data(job_id=job_id)]
        out["log"] = log_tail(m, job_id)
    else:
        out["job"] = {"id": job_id, "state": None, "defn": fired.defn.to_dict() if fired else None}
        out["log"] = {"text": "", "note": "not started: its trigger has not fired"}
    out["lwfm_log"] = [r.to_dict() for r in store.logs(job_id=job_id)][-200:]
    return out


def log_tail(m: Any, job_id: str) -> dict[str, Any]:
    """The last 64 KiB of the job's output, or why there is none."""
    try:
        text = m.log(job_id)
    except LwfmError as e:
        return {"text": "", "note": str(e)}
    return {"text": text[-LOG_TAIL:], "note": "(tail)" if len(text) > LOG_TAIL else None}


def sites(m: Any) -> list[dict[str, Any]]:
    """Each site: driver, pillars, login state, compute types. Never its config: a site's
    table may hold a password."""
    out = []
    for name in m.site_names():
        entry: dict[str, Any] = {"name": name, "driver": str(m.config.site_config(name)
                                                             .get("driver", name)),
                                 "pillars": [], "auth_current": None, "compute_types": [],
                                 "problem": None}
        try:
            site = m.site(name)
            entry["pillars"] = list(site.pillars())
            if "auth" in entry["pillars"]:
                entry["auth_current"] = bool(site.auth.is_current())
            if "spin" in entry["pillars"]:
                entry["compute_types"] = list(site.spin.compute_types())
        except LwfmError as e:
            entry["problem"] = str(e)
        out.append(entry)
    return out


def workflows(store: Store) -> list[dict[str, Any]]:
    with store.read() as c:
        return [dict(r) for r in c.execute(select(
            t.workflows.c.id, t.workflows.c.name, t.workflows.c.description,
            t.workflows.c.created, t.workflows.c.instance_id)
            .order_by(t.workflows.c.created.desc())).mappings()]


def bundles(store: Store) -> list[dict[str, Any]]:
    """Imported bundles and the instance each came from."""
    with store.read() as c:
        return [dict(r) for r in c.execute(select(t.bundles)
                                           .order_by(t.bundles.c.imported_at.desc())).mappings()]


def resolve_workflow(store: Store, text: str) -> str:
    from ..cli._common import pick_workflow
    return pick_workflow(text, ((w["id"], w["name"]) for w in workflows(store)))
