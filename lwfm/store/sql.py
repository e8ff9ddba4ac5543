"""SQL plumbing under the Store: engine set-up, failures, IN-list chunks and bulk inserts.

SQLite runs in WAL mode and every write transaction takes the lock up front
(``BEGIN IMMEDIATE``), so a read-then-write transaction never deadlocks against
another process. The supported databases are SQLite and PostgreSQL.
"""

from __future__ import annotations

import functools
import json
import os
import random
import re
import sqlite3
import time
from contextlib import contextmanager
from operator import itemgetter
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence
from urllib.parse import quote

import orjson
from sqlalchemy import JSON, URL, Connection, Engine, create_engine, event, insert, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from ..errors import ConfigError, StoreError

IN_CHUNK = 5000  # ids per IN (...): under SQLite's 32766 and PostgreSQL's 65535 bind limits


def chunks(items: Sequence[Any], n: int = IN_CHUNK) -> Iterator[Sequence[Any]]:
    """``items`` in slices small enough for one SQL ``IN (...)`` list."""
    for i in range(0, len(items), n):
        yield items[i:i + n]


def shown(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"//([^/@:]*):[^/@]*@", r"//\1:***@", url)


# The databases lwfm is written and tested for: SQL that is not SQLite's is PostgreSQL's
# (advisory locks, SELECT ... FOR UPDATE, RETURNING in order).
SUPPORTED = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}

# Set in a connection's info when SQLite could only open the file immutable, read-only:
# the value is why the normal open failed.
READ_ONLY = "lwfm_read_only"


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


def sqlite_file(url: str | URL) -> Path | None:
    """The database file of a SQLite URL (None: in memory, or a ``file:`` URI)."""
    db = make_url(url).database if isinstance(url, str) else url.database
    if not db or db == ":memory:" or db.startswith("file:"):
        return None
    return Path(db)


def _settled(path: Path | None) -> bool:
    """Whether every committed row is in the main file (no WAL frames beside it): only
    then may the file be read as immutable, without the WAL index SQLite must write."""
    if path is None or not path.is_file() or path.stat().st_size == 0:
        return False
    wal = path.with_name(path.name + "-wal")
    return not wal.exists() or wal.stat().st_size == 0


def _connect_sqlite(dbapi: Any, cargs: tuple, cparams: dict[str, Any], path: Path | None,
                    info: dict[str, Any]) -> Any:
    """A SQLite connection, set up. Even reading a WAL database writes its index (the
    ``-shm`` file): on a full disk or a read-only file system that fails, so a store whose
    rows are all in the main file is then opened immutable, for reading only."""
    conn = dbapi.connect(*cargs, **cparams)
    conn.isolation_level = None  # we issue BEGIN ourselves (see make_engine)
    try:
        cur = conn.cursor()
        try:
            cur.execute("PRAGMA busy_timeout=60000")
            _wal(cur)
            cur.execute("PRAGMA synchronous=NORMAL")
        finally:
            cur.close()
        return conn
    except sqlite3.OperationalError as e:
        conn.close()
        if "locked" in str(e) or not _settled(path):
            raise  # (a lock is waited for, not read around)
        assert path is not None
        ro = dbapi.connect(f"file:{quote(str(path.absolute()))}?mode=ro&immutable=1",
                           **{**cparams, "uri": True})
        ro.isolation_level = None
        info[READ_ONLY] = str(e)
        return ro


def make_engine(url: str) -> Engine:
    """An engine for a supported URL (else a ConfigError that says which are)."""
    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError as e:
        raise ConfigError(f"cannot use store URL {shown(url)!r}: {shown(str(e))} (set [store] "
                          "url in lwfm.toml or LWFM_STORE_URL)") from None
    if backend not in SUPPORTED:
        raise ConfigError(f"cannot use store URL {shown(url)!r}: {backend} is not supported; "
                          "lwfm's store runs on SQLite (the default, sqlite:///PATH) or "
                          "PostgreSQL (postgresql+psycopg://USER@HOST/DB, the postgres extra)")
    try:
        if backend != "sqlite":
            return create_engine(url, pool_pre_ping=True, future=True)
        eng = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})
    except (ArgumentError, NoSuchModuleError, ImportError) as e:
        raise ConfigError(f"cannot use store URL {shown(url)!r}: {shown(str(e))} (set [store] url in lwfm.toml "
                          "or LWFM_STORE_URL; the postgres extra adds PostgreSQL)") from None
    path = sqlite_file(eng.url)

    @event.listens_for(eng, "do_connect")
    def _do_connect(dialect, rec, cargs, cparams):  # noqa: ANN001
        return _connect_sqlite(dialect.loaded_dbapi, cargs, cparams, path, rec.info)

    @event.listens_for(eng, "begin")
    def _on_begin(conn):  # noqa: ANN001
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write")
                             else "BEGIN")

    return eng


@contextmanager
def failing(url: str, action: str) -> Iterator[None]:
    """Turn a database that refuses to work (OperationalError: disk full, locked, read-only,
    server gone) into one StoreError; anything else (a constraint, a bad value) passes."""
    try:
        yield
    except (OperationalError, sqlite3.OperationalError) as e:
        raise failure(url, action, e) from None


def failure(url: str, action: str, err: BaseException) -> StoreError:
    """One clear error for a database that refused to work: it names the store and the
    likeliest cause (disk full, read-only, locked), which the driver's own message hides."""
    orig = getattr(err, "orig", None) or err
    msg = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    cause = msg
    low = msg.lower()
    path = sqlite_file(url) if url.startswith("sqlite") else None
    if "locked" in low or "busy" in low:
        cause = f"the database is locked by another process ({msg})"
    elif path is not None:
        where = path.parent
        try:
            st = os.statvfs(where)
        except OSError:
            st = None
        if st is not None and st.f_flag & os.ST_RDONLY:
            cause = f"{where} is on a read-only file system ({msg})"
        elif st is not None and st.f_bavail * st.f_frsize < 1 << 20:
            cause = (f"the disk is full ({st.f_bavail * st.f_frsize // 1024} KiB free on {where}; "
                     f"free some space and retry) ({msg})")
        elif not os.access(path if path.exists() else where, os.W_OK):
            cause = f"no permission to write {path if path.exists() else where} ({msg})"
    return StoreError(f"cannot {action} the store {shown(url)}: {cause}")


BULK_CACHE_KIB = -65536   # page cache of a bulk transaction (64 MiB; SQLite's default: 2)


@contextmanager
def bulk_cache(c: Connection, enabled: bool) -> Iterator[None]:
    """Around one large write transaction on SQLite (``c`` before its BEGIN): a larger page
    cache. The default 2 MiB thrashes on the random uuid keys of 100k rows and spills the
    sorts of the index builds to temp files; the setting is put back afterwards. (The
    commit still checkpoints as usual: leaving the WAL's copy to the next commit would
    only move its cost to somebody's next submit.)"""
    if not enabled:
        yield
        return
    raw = c.connection.driver_connection
    cache = raw.execute("PRAGMA cache_size").fetchone()[0]
    raw.execute(f"PRAGMA cache_size={BULK_CACHE_KIB}")
    try:
        yield
    finally:
        try:
            raw.execute(f"PRAGMA cache_size={int(cache)}")
        except sqlite3.Error:
            c.invalidate()   # never back in the pool with another connection's settings


@functools.lru_cache(maxsize=256)
def _insert_plan(table: Any, cols: tuple[str, ...]) -> tuple[str, list[int], Callable[[Any], tuple]]:
    """The SQL, the JSON columns' positions and the row getter for one table and column
    order: made once (a submit writes one row at a time)."""
    js = [i for i, k in enumerate(cols) if isinstance(table.c[k].type, JSON)]
    names = ", ".join('"' + k + '"' for k in cols)
    sql = f'INSERT INTO "{table.name}" ({names}) VALUES ({", ".join("?" * len(cols))})'
    get = itemgetter(*cols) if len(cols) > 1 else (lambda r: (r[cols[0]],))
    return sql, js, get


def strict_json(v: Any) -> str:
    """JSON text of a value known to hold no NaN or infinity (a bundle's rows: its parser
    refuses them), by orjson: several times faster than ``json.dumps``, the same value when
    read back. orjson writes NaN as null, hence "strict"; what it refuses (integers beyond
    64 bits, lone surrogates, non-string keys) takes ``json.dumps``."""
    try:
        return orjson.dumps(v).decode()
    except TypeError:
        return json.dumps(v)


def insert_many(c: Connection, table: Any, rows: list[dict[str, Any]], sqlite: bool,
                dumps: Callable[[Any], str] = json.dumps) -> None:
    """executemany of plain rows. On SQLite it goes straight to the DB-API cursor of the
    same connection (so the same transaction): this is the hot path of group commit and
    of bundle import, and SQLAlchemy's per-row processing cost more than SQLite's.
    ``dumps`` writes the JSON columns (:func:`strict_json` for rows without NaN)."""
    if not rows:
        return
    if not sqlite:
        c.execute(insert(table), rows)
        return
    sql, js, get = _insert_plan(table, tuple(rows[0]))
    if js:
        params: list[Any] = []
        for r in rows:
            v = list(get(r))
            for i in js:
                v[i] = dumps(v[i])
            params.append(v)
    else:
        params = [get(r) for r in rows]
    cur = c.connection.cursor()
    try:
        cur.executemany(sql, params)
    finally:
        cur.close()


class DeferredIndexes:
    """Secondary indexes a bulk load into a (nearly) empty table drops, and builds again at
    its end in the same transaction (SQLite only).

    SQLite builds an index over a finished table with one sort, several times faster than
    it keeps the index up to date row by row (a large import writes a million rows). A
    table already holding more rows than come keeps its indexes (rebuilding them would
    cost more than it saves); unique indexes are constraints and always stay; a table
    the load must look rows up in gets its indexes back first (:meth:`restore`). The
    indexes are built from their own ``CREATE INDEX`` text, so they come back exactly as
    they were; a failed load rolls back, and they were never gone.
    """

    MIN_ROWS = 1000   # a smaller insert neither gains nor decides anything

    def __init__(self, c: Connection, enabled: bool):
        self.c, self.enabled = c, enabled
        self.decided: set[str] = set()
        self.dropped: dict[str, list[str]] = {}   # table -> CREATE INDEX statements

    def before_insert(self, table: Any, n_rows: int) -> None:
        name = table.name
        if not self.enabled or n_rows < self.MIN_ROWS or name in self.decided:
            return
        self.decided.add(name)
        c = self.c
        try:   # max(rowid) is at least the row count: cheap, and never too low
            have = c.exec_driver_sql(f'SELECT max(rowid) FROM "{name}"').scalar() or 0
        except OperationalError:   # a table without rowids: keep its indexes
            return
        if have > n_rows:
            return
        found = c.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                                  "AND tbl_name = ? AND sql IS NOT NULL", (name,)).all()
        keep = [(ix, sql) for ix, sql in found if not sql.lstrip().upper().startswith("CREATE UNIQUE")]
        for ix, _ in keep:
            c.exec_driver_sql('DROP INDEX "' + ix.replace('"', '""') + '"')
        self.dropped[name] = [sql for _, sql in keep]

    def restore(self, table: Any | None = None) -> None:
        """Build the dropped indexes again: of ``table`` (before looking rows up in it, and
        it keeps them from then on), or of every table (at the end of the load)."""
        names = list(self.dropped) if table is None else [table.name]
        for name in names:
            self.decided.add(name)
            for sql in self.dropped.pop(name, []):
                self.c.exec_driver_sql(sql)
