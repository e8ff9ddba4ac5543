"""Schema versions: create a new store, check an existing one's version, upgrade an older one.

Opening a current store costs one SELECT (its instance id and schema version, both in
``lwfm_meta``) and writes nothing, so read-only commands work on a full disk. A store at an
older version is upgraded in place by the Alembic scripts in ``migrations/``, in ONE
transaction under the write lock: it ends upgraded or unchanged. Alembic is imported only
then, as CLI start-up time counts. A store from a newer lwfm is refused, untouched.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, delete, insert, inspect, select, update
from sqlalchemy.exc import OperationalError, ProgrammingError, SQLAlchemyError

from ..errors import StoreError
from ..model import new_id
from . import schema as t
from .sql import READ_ONLY, failing, shown

if TYPE_CHECKING:
    from . import Store

MIGRATIONS = Path(__file__).with_name("migrations")
OLDEST = "1"  # every store lwfm wrote before versions were read says "1" (or nothing)
_LOCK = "SELECT pg_advisory_xact_lock(7403)"  # 7403: lwfm's schema (PostgreSQL)
_META = select(t.meta.c.key, t.meta.c.value).where(
    t.meta.c.key.in_(("instance_id", "schema_version")))
log = logging.getLogger("lwfm")


def open_store(store: Store) -> str:
    """The store's instance id, once its schema is this lwfm's (created or upgraded)."""
    meta = _read_meta(store)
    if not meta.get("instance_id"):
        meta = _create(store)
    if meta.get("schema_version", OLDEST) != t.SCHEMA_VERSION:
        check_version(store.url, meta.get("schema_version", OLDEST))
        meta = upgrade(store)
    return meta["instance_id"]


def check_version(url: str, version: str) -> None:
    """Refuse a store this lwfm cannot read: one from a newer lwfm, or not lwfm's."""
    try:
        n = int(version)
    except ValueError:
        n = 0
    if 1 <= n <= int(t.SCHEMA_VERSION):
        return
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version
    try:
        mine = dist_version("lwfm")
    except PackageNotFoundError:
        mine = "?"
    if n < 1:
        raise StoreError(f"the store {shown(url)} has schema version {version!r}, which no lwfm "
                         "writes: it is not an lwfm store, or it is damaged; it was left unchanged")
    raise StoreError(f"the store {shown(url)} has schema version {version}, newer than this lwfm "
                     f"({mine}, schema version {t.SCHEMA_VERSION}) can read: a newer lwfm wrote it. "
                     "Upgrade lwfm (pip install -U lwfm) to use it; it was left unchanged")


def _read_meta(store: Store) -> dict[str, str]:
    """lwfm_meta's identity rows, by one SELECT ({} for a database lwfm has not set up)."""
    with failing(store.url, "open"), store.engine.connect() as c:
        try:
            try:
                with c.begin():
                    return dict(c.execute(_META).all())
            except (OperationalError, ProgrammingError):
                exists = inspect(c).has_table(t.meta.name)
                c.rollback()  # the inspection's own transaction
                if not exists:
                    return {}
            # The table is there: another process created the schema between our SELECT and
            # the check (a fresh PostgreSQL store opened by many at once). Read again; a
            # failure now is the database's (disk, lock, server) and is raised.
            with c.begin():
                return dict(c.execute(_META).all())
        finally:
            if READ_ONLY in c.connection.info:
                c.invalidate()


def _create(store: Store) -> dict[str, str]:
    """Create the tables of a new store, at this lwfm's version, under the write lock (many
    processes may open a fresh home at once: the first creates, the others find it)."""
    with store.write() as c:
        if not store.sqlite:
            c.exec_driver_sql(_LOCK)
        t.metadata.create_all(c)
        meta = dict(c.execute(_META).all())
        if not meta.get("instance_id"):
            meta = {"instance_id": new_id(), "schema_version": t.SCHEMA_VERSION}
            c.execute(delete(t.meta).where(t.meta.c.key.in_(list(meta))))
            c.execute(insert(t.meta), [{"key": k, "value": v} for k, v in meta.items()])
            _stamp(c, t.SCHEMA_VERSION)
    return meta


def _stamp(c: Connection, version: str) -> None:
    """Record ``version`` in Alembic's table too, as ``alembic stamp`` would."""
    t.alembic_version.create(c, checkfirst=True)
    c.execute(delete(t.alembic_version))
    c.execute(insert(t.alembic_version).values(version_num=version))


def upgrade(store: Store) -> dict[str, str]:
    """Upgrade an older store to this lwfm's schema: all of it, or nothing."""
    from alembic import command
    from alembic.config import Config
    from alembic.util import CommandError

    with store.write("upgrade the schema of") as c:
        if not store.sqlite:
            c.exec_driver_sql(_LOCK)
        meta = dict(c.execute(_META).all())
        have = meta.get("schema_version", OLDEST)
        check_version(store.url, have)
        if have == t.SCHEMA_VERSION:
            return meta  # another process upgraded it while we waited for the lock
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = c  # env.py runs the scripts in this transaction
        try:
            command.stamp(cfg, have, purge=True)  # Alembic's table may be missing or stale
            command.upgrade(cfg, t.SCHEMA_VERSION)
        except OperationalError:
            raise  # the database failed (disk, lock): store.write says so, and why
        except (CommandError, SQLAlchemyError) as e:  # a script met what it did not expect
            why = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
            raise StoreError(f"cannot upgrade the store {shown(store.url)} from schema version "
                             f"{have} to {t.SCHEMA_VERSION}: {why}; it was left unchanged") from None
        meta["schema_version"] = t.SCHEMA_VERSION
        if c.execute(update(t.meta).where(t.meta.c.key == "schema_version")
                     .values(value=t.SCHEMA_VERSION)).rowcount == 0:
            c.execute(insert(t.meta).values(key="schema_version", value=t.SCHEMA_VERSION))
    log.info("upgraded the store %s from schema version %s to %s", shown(store.url), have,
             t.SCHEMA_VERSION)
    return meta
