"""SQL plumbing under the Store: engine set-up, IN-list chunks and bulk inserts.

SQLite runs in WAL mode and every write transaction takes the lock up front
(``BEGIN IMMEDIATE``), so a read-then-write transaction never deadlocks against
another process.
"""

from __future__ import annotations

import json
import random
import re
import sqlite3
import time
from operator import itemgetter
from typing import Any, Iterator, Sequence

from sqlalchemy import JSON, Connection, Engine, create_engine, event, insert
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from ..errors import ConfigError

IN_CHUNK = 5000  # ids per IN (...): under SQLite's 32766 and PostgreSQL's 65535 bind limits


def chunks(items: Sequence[Any], n: int = IN_CHUNK) -> Iterator[Sequence[Any]]:
    """``items`` in slices small enough for one SQL ``IN (...)`` list."""
    for i in range(0, len(items), n):
        yield items[i:i + n]


def _shown(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"//([^/@:]*):[^/@]*@", r"//\1:***@", url)


def _wal(cur: Any) -> None:
    """Put the database in WAL mode (it stays so: later opens only read the mode).

    Switching a fresh database to WAL needs an exclusive lock, and SQLite answers
    "database is locked" at once, without its busy timeout, when another process
    opening the same new home holds any lock: so retry, briefly and jittered."""
    if cur.execute("PRAGMA journal_mode").fetchone()[0].lower() in ("wal", "memory"):
        return  # already WAL (every open after the first), or an in-memory database
    deadline = time.monotonic() + 60
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL").fetchall()
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.005, 0.05))


def make_engine(url: str) -> Engine:
    try:
        if not url.startswith("sqlite"):
            return create_engine(url, pool_pre_ping=True, future=True)
        eng = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})
    except (ArgumentError, NoSuchModuleError, ImportError) as e:
        raise ConfigError(f"cannot use store URL {_shown(url)!r}: {_shown(str(e))} (set [store] url in lwfm.toml "
                          "or LWFM_STORE_URL; the postgres extra adds PostgreSQL)") from None

    @event.listens_for(eng, "connect")
    def _on_connect(dbapi_conn, _rec):  # noqa: ANN001
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
        cur = dbapi_conn.cursor()
        try:
            cur.execute("PRAGMA busy_timeout=60000")
            _wal(cur)
            cur.execute("PRAGMA synchronous=NORMAL")
        finally:
            cur.close()

    @event.listens_for(eng, "begin")
    def _on_begin(conn):  # noqa: ANN001
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write")
                             else "BEGIN")

    return eng


def insert_many(c: Connection, table: Any, rows: list[dict[str, Any]], sqlite: bool) -> None:
    """executemany of plain rows. On SQLite it goes straight to the DB-API cursor of the
    same connection (so the same transaction): this is the hot path of group commit and
    of bundle import, and SQLAlchemy's per-row processing cost more than SQLite's."""
    if not rows:
        return
    if not sqlite:
        c.execute(insert(table), rows)
        return
    cols = list(rows[0])
    js = [i for i, k in enumerate(cols) if isinstance(table.c[k].type, JSON)]
    names = ", ".join('"' + k + '"' for k in cols)
    sql = f'INSERT INTO "{table.name}" ({names}) VALUES ({", ".join("?" * len(cols))})'
    get = itemgetter(*cols) if len(cols) > 1 else (lambda r: (r[cols[0]],))
    if js:
        params: list[Any] = []
        for r in rows:
            v = list(get(r))
            for i in js:
                v[i] = json.dumps(v[i])
            params.append(v)
    else:
        params = [get(r) for r in rows]
    cur = c.connection.cursor()
    try:
        cur.executemany(sql, params)
    finally:
        cur.close()
