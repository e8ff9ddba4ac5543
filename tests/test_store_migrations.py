"""Schema versions on real SQLite and PostgreSQL: older homes are upgraded in place (their
data kept), a home from a newer lwfm is refused and left unchanged, unsupported databases
are refused by name, and opening a current store is one SELECT that writes nothing.

The old homes are built here from the tables as lwfm created them at two earlier commits
(``git log -p lwfm/store/schema.py``), not from the migration scripts under test.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import (JSON, BigInteger, Boolean, Column, Index, Integer, MetaData, String, Table,
                        Text, create_engine, insert, inspect, text, update)

from lwfm.errors import ConfigError, StoreError
from lwfm.model import Job, JobContext, JobDefn, State, Trigger, TriggerKind
from lwfm.store import Store
from lwfm.store import schema as t

_Seq = BigInteger().with_variant(Integer(), "sqlite")
IID = "0b1d4ac1-7d1e-4f40-9a53-6f1f4b7c0a11"
JOB, KID, DATA, TRIG, WF = "job-old-1", "job-old-2", "data-old-1", "trig-old-1", "wf-old-1"
T0 = "2026-11-21T14:50:00+00:00"


def old_metadata(submitter: bool) -> MetaData:
    """lwfm's tables at commit 0cf2501 (before jobs.submitter), or with ``submitter`` as at
    1fbb114..7ad47fe (the column, still no index on triggers.job_id). Both said "1"."""
    md = MetaData()
    Table("lwfm_meta", md, Column("key", String(64), primary_key=True),
          Column("value", Text, nullable=False))
    Table("workflows", md, Column("id", String(64), primary_key=True),
          Column("name", Text, nullable=False, default=""),
          Column("description", Text, nullable=False, default=""),
          Column("props", JSON, nullable=False, default=dict),
          Column("created", String(40), nullable=False),
          Column("instance_id", String(64), nullable=False))
    Table("jobs", md, Column("id", String(64), primary_key=True), Column("name", Text, nullable=False),
          Column("defn", JSON, nullable=False), Column("parent_id", String(64), index=True),
          Column("originator_id", String(64), index=True), Column("workflow_id", String(64), index=True),
          Column("site", String(128), nullable=False, index=True), Column("native_id", Text),
          Column("state", String(16), index=True), Column("exit_code", Integer),
          Column("created", String(40), nullable=False, index=True), Column("started", String(40)),
          Column("ended", String(40)), Column("triggered_by", String(64)),
          Column("instance_id", String(64), nullable=False),
          *([Column("submitter", String(255))] if submitter else []))
    Table("statuses", md, Column("seq", _Seq, primary_key=True, autoincrement=True),
          Column("job_id", String(64), nullable=False, index=True),
          Column("state", String(16), nullable=False), Column("native_state", Text),
          Column("info", Text), Column("time", String(40), nullable=False),
          Column("exit_code", Integer))
    Table("data", md, Column("id", String(64), primary_key=True), Column("url", Text, nullable=False),
          Column("site", String(128), nullable=False), Column("direction", String(8), nullable=False),
          Column("metadata", JSON, nullable=False, default=dict), Column("size", BigInteger),
          Column("sha256", String(64), index=True), Column("media_type", String(255)),
          Column("job_id", String(64), index=True), Column("workflow_id", String(64), index=True),
          Column("derived_from", String(64), index=True), Column("time", String(40), nullable=False),
          Column("instance_id", String(64), nullable=False))
    Table("data_meta", md, Column("data_id", String(64), nullable=False, index=True),
          Column("key", String(255), nullable=False), Column("value", Text, nullable=False),
          Column("typed", Boolean, nullable=False, default=False),
          Column("vhash", String(64), nullable=False), Index("ix_data_meta_key_vhash", "key", "vhash"))
    Table("triggers", md, Column("id", String(64), primary_key=True),
          Column("kind", String(8), nullable=False), Column("status", String(8), nullable=False, index=True),
          Column("body", JSON, nullable=False), Column("job_id", String(64), nullable=False),
          Column("fired_by", String(64)), Column("reason", Text), Column("fired_at", String(40)))
    Table("trigger_watch", md, Column("trigger_id", String(64), nullable=False, index=True),
          Column("job_id", String(64), nullable=False, index=True))
    Table("logs", md, Column("seq", _Seq, primary_key=True, autoincrement=True),
          Column("time", String(40), nullable=False), Column("level", String(16), nullable=False),
          Column("message", Text, nullable=False), Column("job_id", String(64), index=True),
          Column("workflow_id", String(64), index=True))
    Table("bundles", md, Column("id", String(64), primary_key=True),
          Column("origin_instance", String(64), nullable=False, index=True),
          Column("file_name", Text, nullable=False), Column("sha256", String(64), nullable=False),
          Column("imported_at", String(40), nullable=False),
          Column("summary", JSON, nullable=False, default=dict))
    Table("bundle_items", md, Column("bundle_id", String(64), nullable=False, index=True),
          Column("kind", String(16), nullable=False), Column("ref", String(64), nullable=False))
    Table("events", md, Column("seq", _Seq, primary_key=True, autoincrement=True),
          Column("kind", String(16), nullable=False), Column("ref", String(64), nullable=False))
    return md


def _defn(argv: list[str]) -> dict:
    return JobDefn(argv).to_dict()  # (the JSON columns' shape did not change)


def make_old_home(url: str, submitter: bool) -> None:
    """An old store with a workflow, a finished job and its history, data with metadata,
    a pending trigger (whose job is yet to run) and the journal, as old lwfm wrote them."""
    md = old_metadata(submitter)
    eng = create_engine(url)
    with eng.begin() as c:
        md.create_all(c)
        tb = md.tables
        c.execute(insert(tb["lwfm_meta"]), [{"key": "instance_id", "value": IID},
                                            {"key": "schema_version", "value": "1"}])
        c.execute(insert(tb["workflows"]).values(id=WF, name="old-wf", description="", props={},
                                                 created=T0, instance_id=IID))
        job = dict(id=JOB, name="echo old", defn=_defn(["echo", "old"]), parent_id=None,
                   originator_id=JOB, workflow_id=WF, site="local", native_id="123",
                   state="COMPLETE", exit_code=0, created=T0, started=T0, ended=T0,
                   triggered_by=None, instance_id=IID, **({"submitter": "ada"} if submitter else {}))
        c.execute(insert(tb["jobs"]).values(**job))
        c.execute(insert(tb["statuses"]), [
            dict(job_id=JOB, state=s, native_state=None, info=None, time=T0,
                 exit_code=0 if s == "COMPLETE" else None)
            for s in ("PENDING", "RUNNING", "COMPLETE")])
        c.execute(insert(tb["data"]).values(
            id=DATA, url="file:///tmp/old.dat", site="local", direction="put",
            metadata={"stage": "raw", "n": 3}, size=3, sha256="0" * 64, media_type=None,
            job_id=JOB, workflow_id=WF, derived_from=None, time=T0, instance_id=IID))
        c.execute(insert(tb["data_meta"]), [
            dict(data_id=DATA, key="stage", value="raw", typed=False, vhash=t.value_hash("raw")),
            dict(data_id=DATA, key="n", value="3", typed=True, vhash=t.value_hash("3"))])
        body = Trigger(kind=TriggerKind.JOB, defn=JobDefn(["echo", "next"]), watch=[JOB],
                       states=[State.COMPLETE], workflow_id=WF, id=TRIG, job_id=KID,
                       instance_id=IID).to_dict()
        c.execute(insert(tb["triggers"]).values(id=TRIG, kind="job", status="pending", body=body,
                                                job_id=KID, fired_by=None, reason=None,
                                                fired_at=None))
        c.execute(insert(tb["trigger_watch"]).values(trigger_id=TRIG, job_id=JOB))
        c.execute(insert(tb["logs"]).values(time=T0, level="INFO", message="old log", job_id=JOB,
                                            workflow_id=WF))
        c.execute(insert(tb["events"]), [{"kind": "workflow", "ref": WF}, {"kind": "job", "ref": JOB},
                                         {"kind": "data", "ref": DATA}])
    eng.dispose()


def schema_of(url: str) -> dict:
    """Tables, their columns and index names, as the database reports them."""
    eng = create_engine(url)
    try:
        with eng.connect() as c:
            ins = inspect(c)
            return {tb: {"columns": sorted(col["name"] for col in ins.get_columns(tb)),
                         "indexes": sorted(i["name"] for i in ins.get_indexes(tb))}
                    for tb in sorted(ins.get_table_names())}
    finally:
        eng.dispose()


def meta_rows(url: str) -> dict[str, str]:
    eng = create_engine(url)
    try:
        with eng.connect() as c:
            return dict(c.execute(text("SELECT key, value FROM lwfm_meta")).all())
    finally:
        eng.dispose()


def diffs_from_models(url: str) -> list:
    """Alembic's comparison of the database with lwfm.store.schema ([] = the same schema)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    eng = create_engine(url)
    try:
        with eng.connect() as c:
            return compare_metadata(MigrationContext.configure(c), t.metadata)
    finally:
        eng.dispose()


def snapshot(url: str) -> str:
    """Every table's rows and the schema: equal snapshots, an unchanged store."""
    eng = create_engine(url)
    out = {"schema": schema_of(url)}
    try:
        with eng.connect() as c:
            for tb in out["schema"]:
                out[tb] = sorted(map(repr, c.execute(text(f'SELECT * FROM "{tb}"')).all()))
    finally:
        eng.dispose()
    return hashlib.sha256(json.dumps(out, sort_keys=True).encode()).hexdigest()


# -- an older home is upgraded in place -----------------------------------------------
@pytest.mark.parametrize("submitter", [False, True], ids=["before-submitter", "before-index"])
def test_an_old_home_is_upgraded_in_place_and_keeps_its_data(store_url: str, submitter: bool) -> None:
    make_old_home(store_url, submitter)
    before = schema_of(store_url)
    assert ("submitter" in before["jobs"]["columns"]) is submitter
    assert "ix_triggers_job_id" not in before["triggers"]["indexes"]
    assert "alembic_version" not in before

    s = Store(store_url)
    try:
        assert s.instance_id == IID
        job = s.get_job(JOB)
        assert job.state is State.COMPLETE and job.exit_code == 0
        assert job.submitter == ("ada" if submitter else None)  # not known: NULL, not guessed
        assert [h.state for h in s.history(JOB)] == [State.PENDING, State.RUNNING, State.COMPLETE]
        assert [d.id for d in s.find_data({"stage": "raw", "n": 3})] == [DATA]
        assert s.get_workflow(WF).name == "old-wf"
        assert s.trigger_for_job(KID).id == TRIG
        assert s.resolve_job_id(KID[:9]) == KID
        assert [r.message for r in s.logs(job_id=JOB)] == ["old log"]
        assert s.last_event() == 3
        new = Job(defn=JobDefn(["true"]), context=JobContext(), submitter="grace")
        s.add_job(new)
        assert s.get_job(new.id).submitter == "grace"
    finally:
        s.close()

    after = schema_of(store_url)
    assert "submitter" in after["jobs"]["columns"]
    assert "ix_triggers_job_id" in after["triggers"]["indexes"]
    assert meta_rows(store_url)["schema_version"] == t.SCHEMA_VERSION
    eng = create_engine(store_url)
    with eng.connect() as c:
        assert c.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [
            t.SCHEMA_VERSION]
    eng.dispose()
    assert diffs_from_models(store_url) == []   # exactly the schema a new store gets


def test_a_new_store_and_the_scripts_from_nothing_agree(store_url: str, tmp_path: Path) -> None:
    """New stores come from schema.py at the head; the scripts must build the same schema
    (a column added to schema.py without its migration fails here)."""
    Store(store_url).close()
    assert diffs_from_models(store_url) == []
    assert meta_rows(store_url)["schema_version"] == t.SCHEMA_VERSION
    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from lwfm.store._migrate import MIGRATIONS
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(cfg).get_heads() == [t.SCHEMA_VERSION]
    blank = f"sqlite:///{tmp_path / 'blank.db'}"
    eng = create_engine(blank)
    with eng.begin() as c:
        cfg.attributes["connection"] = c
        command.upgrade(cfg, "head")
    with eng.begin() as c:  # and back down to the baseline, and up again
        cfg.attributes["connection"] = c
        command.downgrade(cfg, "1")
        assert "submitter" not in {col["name"] for col in inspect(c).get_columns("jobs")}
        command.upgrade(cfg, "head")
    eng.dispose()
    assert diffs_from_models(blank) == []
    assert schema_of(blank) == schema_of(store_url)


def test_an_old_home_opens_from_the_cli(home: Path) -> None:
    make_old_home(f"sqlite:///{home / 'lwfm.db'}", submitter=False)
    r = subprocess.run([sys.executable, "-m", "lwfm.cli", "jobs", "--json"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert [j["id"] for j in json.loads(r.stdout)] == [JOB]


def test_many_processes_opening_an_old_home_at_once_all_succeed(store_url: str) -> None:
    """One upgrades, under the write lock; the others wait and find it upgraded."""
    make_old_home(store_url, submitter=False)
    code = textwrap.dedent("""
        import sys
        from lwfm.store import Store
        s = Store(sys.argv[1]); print(s.instance_id, s.get_job(sys.argv[2]).state.value); s.close()
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code, store_url, JOB], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(6)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, [e for _, e in outs]
    assert {o.strip() for o, _ in outs} == {f"{IID} COMPLETE"}
    assert diffs_from_models(store_url) == []


def test_a_failed_upgrade_leaves_the_old_home_unchanged(store_url: str) -> None:
    """The scripts run in one transaction: when the last one fails (here: its index name is
    taken), the first one's new column is rolled back too."""
    make_old_home(store_url, submitter=False)
    eng = create_engine(store_url)
    with eng.begin() as c:
        c.execute(text("CREATE INDEX ix_triggers_job_id ON logs (level)"))
    eng.dispose()
    before = snapshot(store_url)
    with pytest.raises(StoreError, match=r"cannot upgrade the (schema of the )?store .*ix_triggers_job_id"):
        Store(store_url)
    assert snapshot(store_url) == before
    assert "submitter" not in schema_of(store_url)["jobs"]["columns"]
    assert meta_rows(store_url)["schema_version"] == "1"


# -- a newer home is refused ------------------------------------------------------------
def _make_newer(url: str) -> None:
    Store(url).close()
    eng = create_engine(url)
    with eng.begin() as c:
        c.execute(update(t.meta).where(t.meta.c.key == "schema_version").values(value="99"))
    eng.dispose()


def test_a_home_from_a_newer_lwfm_is_refused_and_left_unchanged(store_url: str) -> None:
    _make_newer(store_url)
    before = snapshot(store_url)
    with pytest.raises(StoreError, match=r"schema version 99, newer than this lwfm.*Upgrade lwfm"):
        Store(store_url)
    assert snapshot(store_url) == before


def test_the_cli_refuses_a_newer_home_in_one_line(home: Path) -> None:
    _make_newer(f"sqlite:///{home / 'lwfm.db'}")
    db = (home / "lwfm.db").read_bytes()
    r = subprocess.run([sys.executable, "-m", "lwfm.cli", "jobs"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert "Upgrade lwfm" in r.stderr
    assert (home / "lwfm.db").read_bytes() == db


def test_a_store_version_no_lwfm_writes_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'odd.db'}"
    Store(url).close()
    eng = create_engine(url)
    with eng.begin() as c:
        c.execute(update(t.meta).where(t.meta.c.key == "schema_version").values(value="banana"))
    eng.dispose()
    with pytest.raises(StoreError, match="not an lwfm store"):
        Store(url)


# -- supported databases ------------------------------------------------------------------
@pytest.mark.parametrize("url", ["mysql://me@db.example/lwfm", "mysql+pymysql://me:pw@h/db",
                                 "mssql+pyodbc://h/db", "oracle://h/db", "nonsense://x"])
def test_an_unsupported_database_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="SQLite.*PostgreSQL") as e:
        Store(url)
    assert "pw" not in str(e.value)


def test_the_cli_names_the_supported_databases(home: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "lwfm.cli", "jobs"], capture_output=True, text=True,
                       timeout=120, env={**os.environ, "LWFM_STORE_URL": "mysql://me@db/lwfm"})
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert "mysql is not supported" in r.stderr and "PostgreSQL" in r.stderr


# -- opening is cheap -------------------------------------------------------------------
OPEN_COUNTING = textwrap.dedent("""
    import json, sys
    from sqlalchemy import Engine, event
    seen = []
    event.listen(Engine, "before_cursor_execute",
                 lambda conn, cur, stmt, *a: seen.append(" ".join(stmt.split())))
    from lwfm.store import Store
    s = Store(sys.argv[1])
    s.close()
    print(json.dumps({"statements": seen, "alembic": any(m.startswith("alembic") for m in sys.modules)}))
""")


def test_opening_a_current_store_is_one_select_and_imports_no_alembic(store_url: str) -> None:
    Store(store_url).close()
    r = subprocess.run([sys.executable, "-c", OPEN_COUNTING, store_url], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["alembic"] is False
    ours = [s for s in got["statements"] if "lwfm_meta" in s or not s.upper().startswith(
        ("SELECT PG_", "SELECT CURRENT_", "SHOW", "SELECT VERSION", "SELECT 1"))]
    ours = [s for s in ours if s.upper() not in ("BEGIN", "COMMIT", "ROLLBACK")]
    assert len(ours) == 1 and ours[0].upper().startswith("SELECT") and "lwfm_meta" in ours[0], ours
    assert not [s for s in got["statements"] if s.split()[0].upper() in
                ("INSERT", "UPDATE", "DELETE", "CREATE", "ALTER", "DROP")], got["statements"]
