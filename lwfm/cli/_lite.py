"""The light read path of ``lwfm jobs`` and ``lwfm status``: stdlib sqlite3, read-only.

Start-up is what a command-line user feels most, and importing SQLAlchemy alone costs
several times Python's own start-up. A listing of jobs on a SQLite home therefore reads
the rows straight through :mod:`sqlite3`, opened read-only: no SQLAlchemy, no schema
check, no recorder thread, no site. It answers only where it gives exactly what the
Manager path gives, and says "not me" (None) otherwise, so that path decides:

- the store is not a SQLite file that exists (PostgreSQL, a fresh home, ``:memory:``);
- SQLite cannot read it as it stands (an older schema to migrate, a lock, an I/O error):
  the Manager path migrates, or raises the one clear error;
- a listed job has not ended: its site may know more than its row (a job whose
  supervisor is gone), and the Manager path is the one that asks. An ended job's row is
  final (a state never goes backwards), so it needs no site;
- an id prefix that is unknown, ambiguous or a trigger's job yet to start: the Manager
  path resolves it and gives the one error message.

The rows come out as :func:`lwfm.cli.core.job_dict` gives them (a test compares the two
paths on the same home).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from .._schema_version import SCHEMA_VERSION
from ..config import load
from ..model import TERMINAL, JobStatus, parse_time
from ._common import pick_workflow

_COLUMNS = ("id", "name", "site", "state", "exit_code", "workflow_id", "parent_id",
            "originator_id", "native_id", "created", "triggered_by", "started", "ended")
_ENDED = {s.value for s in TERMINAL}


def sqlite_path(url: str) -> Path | None:
    """The database file of a plain ``sqlite:///PATH`` URL (percent-decoded, as SQLAlchemy
    reads it), else None."""
    if not url.startswith("sqlite:///") or "?" in url:
        return None
    p = Path(unquote(url[len("sqlite:///"):]))
    return p if str(p) not in ("", ":memory:") else None


def _open(home: str | None) -> sqlite3.Connection | None:
    path = sqlite_path(load(home).store_url)
    if path is None or not path.is_file():
        return None
    # mode=ro: this process never writes the store (no schema created, no journal).
    c = sqlite3.connect(f"file:{quote(os.fspath(path.absolute()))}?mode=ro", uri=True,
                        timeout=60, isolation_level=None)
    try:  # another schema version: the Manager path upgrades it, or refuses it clearly
        row = c.execute("SELECT value FROM lwfm_meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.Error:
        row = None
    if row is None or row[0] != SCHEMA_VERSION:
        c.close()
        return None
    return c


def light_jobs(home: str | None, workflow: str | None, site: str | None, state: str | None,
               limit: int | None) -> list[dict[str, Any]] | None:
    """Jobs as ``lwfm jobs`` lists them, or None when the Manager path must answer."""
    c = _open(home)
    if c is None:
        return None
    try:
        c.execute("BEGIN")  # one snapshot: the workflow and its jobs agree
        where, args = [], []
        if workflow is not None:
            wfs = c.execute("SELECT id, name FROM workflows").fetchall()
            where.append("workflow_id = ?")
            args.append(pick_workflow(workflow, wfs))  # a typo is an error, as there
        for col, v in (("site", site), ("state", state)):
            if v is not None:
                where.append(f"{col} = ?")
                args.append(v)
        sql = (f"SELECT {', '.join(_COLUMNS)} FROM jobs"
               + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY created")
        if limit:
            sql += f" LIMIT {int(limit)}"
        rows = c.execute(sql, args).fetchall()
    except sqlite3.Error:
        return None  # the Manager path opens it properly (migrates, or says what is wrong)
    finally:
        c.close()
    out = [_ended(r) for r in rows]
    return None if None in out else out  # type: ignore[return-value]


def _ended(row: tuple[Any, ...]) -> dict[str, Any] | None:
    """A jobs row as :func:`lwfm.cli.core.job_dict` gives it, or None if it has not ended."""
    d = dict(zip(_COLUMNS, row))
    if d["state"] not in _ENDED:
        return None
    for k in ("created", "started", "ended"):  # as job_dict: parsed, then isoformat()
        d[k] = parse_time(d[k]).isoformat() if d[k] is not None else None
    return d


def light_status(home: str | None, prefix: str,
                 history: bool) -> tuple[dict[str, Any], list[JobStatus]] | None:
    """An ended job (by unique id prefix, as ``Store.resolve_job_id`` takes it) and, if
    asked, its history; None when the Manager path must answer."""
    c = _open(home) if prefix else None
    if c is None:
        return None
    esc = prefix.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    try:
        c.execute("BEGIN")
        hits = {i for sql in ("SELECT id FROM jobs WHERE id LIKE ? ESCAPE '\\' LIMIT 2",
                              "SELECT job_id FROM triggers WHERE job_id LIKE ? ESCAPE '\\' LIMIT 2")
                for (i,) in c.execute(sql, (esc + "%",))}
        if len(hits) != 1:
            return None
        jid = hits.pop()
        row = c.execute(f"SELECT {', '.join(_COLUMNS)} FROM jobs WHERE id = ?", (jid,)).fetchone()
        if row is None or (d := _ended(row)) is None:
            return None
        hist = []
        if history:
            cols = ("job_id", "state", "native_state", "info", "time", "exit_code")
            hist = [JobStatus.from_dict(dict(zip(cols, r))) for r in c.execute(
                f"SELECT {', '.join(cols)} FROM statuses WHERE job_id = ? ORDER BY seq", (jid,))]
    except sqlite3.Error:
        return None
    finally:
        c.close()
    return d, hist
