"""lwfm.store against real SQLite (WAL) and a real PostgreSQL server (``store_url``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from lwfm.errors import NotFound
from lwfm.model import (DataObject, Direction, Job, JobContext, JobDefn, JobStatus, LogRecord,
                        State, Trigger, TriggerKind, TriggerStatus, Workflow)
from lwfm.store import Store


@pytest.fixture
def store(store_url: str):
    s = Store(store_url)
    yield s
    s.close()


def make_job(store: Store | None = None, *, workflow_id: str | None = None, site: str = "local",
             parent_id: str | None = None, first: State | None = None) -> Job:
    job = Job(defn=JobDefn(["/bin/echo", "hi"], site=site),
              context=JobContext(workflow_id=workflow_id, site=site, parent_id=parent_id))
    if store is not None:
        store.add_job(job, JobStatus(job.id, first) if first else None)
    return job


def events(store: Store, after: int = 0) -> list[tuple[str, str]]:
    return [(kind, ref) for _seq, kind, ref in store.events_after(after)]


# -- identity -------------------------------------------------------------------------
def test_instance_id_persists_across_reopen(store_url: str) -> None:
    a = Store(store_url)
    iid = a.instance_id
    a.close()
    b = Store(store_url)
    try:
        assert b.instance_id == iid
        assert len(iid) == 36 and iid.count("-") == 4
    finally:
        b.close()


def test_instances_differ(store: Store, tmp_path: Path) -> None:
    other = Store(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        assert other.instance_id != store.instance_id
    finally:
        other.close()


def test_backend_is_the_real_engine(store: Store, store_url: str) -> None:
    """SQLite runs in WAL mode; PostgreSQL is a real server, not a stand-in."""
    from sqlalchemy import text
    with store.read() as c:
        if store_url.startswith("sqlite"):
            assert store.engine.dialect.name == "sqlite"
            assert c.execute(text("PRAGMA journal_mode")).scalar_one().lower() == "wal"
        else:
            assert store.engine.dialect.name == "postgresql"
            assert "PostgreSQL" in c.execute(text("SELECT version()")).scalar_one()
    assert store.last_event() == 0    # every test gets an empty store


# -- workflows and jobs ---------------------------------------------------------------
def test_workflow_add_get_find(store: Store) -> None:
    wf = store.add_workflow(Workflow(name="wf-a", description="d", props={"k": [1, 2]}))
    store.add_workflow(Workflow(name="wf-b"))
    got = store.get_workflow(wf.id)
    assert got.to_dict() == wf.to_dict()
    assert got.instance_id == store.instance_id
    assert [w.id for w in store.find_workflows(name="wf-a")] == [wf.id]
    assert len(store.find_workflows()) == 2


def test_job_add_get_roundtrip(store: Store) -> None:
    wf = store.add_workflow(Workflow(name="w"))
    job = Job(defn=JobDefn("echo $X", kind="shell", env={"X": "1"}, resources={"cpus": 2}),
              context=JobContext(workflow_id=wf.id, parent_id="p-1"), triggered_by="t-1")
    store.add_job(job)
    got = store.get_job(job.id)
    assert got.to_dict() == job.to_dict()
    assert got.instance_id == store.instance_id
    assert got.context.originator_id == job.id
    assert got.state is None


def test_job_with_first_status(store: Store) -> None:
    job = make_job(store, first=State.READY)
    assert store.get_job(job.id).state is State.READY
    assert [s.state for s in store.history(job.id)] == [State.READY]


def test_find_jobs_filters(store: Store) -> None:
    wf = store.add_workflow(Workflow(name="w"))
    a = make_job(store, workflow_id=wf.id, first=State.READY)
    b = make_job(store, workflow_id=wf.id, site="hpc", parent_id=a.id, first=State.READY)
    c = make_job(store, first=State.READY)
    store.record_status(JobStatus(c.id, State.COMPLETE, exit_code=0))
    assert {j.id for j in store.find_jobs(workflow_id=wf.id)} == {a.id, b.id}
    assert [j.id for j in store.find_jobs(site="hpc")] == [b.id]
    assert [j.id for j in store.find_jobs(parent_id=a.id)] == [b.id]
    assert [j.id for j in store.find_jobs(state="COMPLETE")] == [c.id]
    assert {j.id for j in store.find_jobs(state=State.READY)} == {a.id, b.id}
    assert len(store.find_jobs(limit=2)) == 2


def test_resolve_job_id_prefix(store: Store) -> None:
    job = make_job(store)
    assert store.resolve_job_id(job.id[:8]) == job.id
    with pytest.raises(NotFound):
        store.resolve_job_id("zzzz")
    with pytest.raises(NotFound):          # a LIKE wildcard is not a prefix of everything
        store.resolve_job_id("%")


def test_set_native_id(store: Store) -> None:
    job = make_job(store)
    store.set_native_id(job.id, "12345")
    assert store.get_job(job.id).context.native_id == "12345"


def test_duplicate_job_is_refused_and_store_unchanged(store: Store) -> None:
    job = make_job(store, first=State.READY)
    before = store.last_event()
    with pytest.raises(Exception):
        store.add_job(job, JobStatus(job.id, State.RUNNING))
    assert store.last_event() == before
    assert [s.state for s in store.history(job.id)] == [State.READY]
    assert store.get_job(job.id).state is State.READY


# -- statuses -------------------------------------------------------------------------
def test_history_kept_in_order(store: Store) -> None:
    job = make_job(store)
    seq = [State.READY, State.PENDING, State.RUNNING, State.INFO, State.FINISHING, State.COMPLETE]
    for s in seq:
        store.record_status(JobStatus(job.id, s, native_state=s.value.lower(), info=f"i-{s.value}"))
    hist = store.history(job.id)
    assert [h.state for h in hist] == seq
    assert [h.info for h in hist] == [f"i-{s.value}" for s in seq]
    assert [h.native_state for h in hist] == [s.value.lower() for s in seq]


def test_info_after_terminal_keeps_terminal(store: Store) -> None:
    job = make_job(store, first=State.READY)
    store.record_status(JobStatus(job.id, State.RUNNING))
    assert store.record_status(JobStatus(job.id, State.COMPLETE, exit_code=0)) == (State.COMPLETE, True)
    assert store.record_status(JobStatus(job.id, State.INFO, info="late")) == (State.COMPLETE, False)
    got = store.get_job(job.id)
    assert got.state is State.COMPLETE and got.exit_code == 0
    assert [h.state for h in store.history(job.id)][-1] is State.INFO


def test_late_running_after_complete_keeps_complete(store: Store) -> None:
    job = make_job(store, first=State.READY)
    store.record_status(JobStatus(job.id, State.COMPLETE, exit_code=0))
    ended = store.get_job(job.id).ended
    assert store.record_status(JobStatus(job.id, State.RUNNING)) == (State.COMPLETE, False)
    assert store.record_status(JobStatus(job.id, State.FAILED, exit_code=3)) == (State.COMPLETE, False)
    got = store.get_job(job.id)
    assert got.state is State.COMPLETE and got.exit_code == 0 and got.ended == ended
    assert [h.state for h in store.history(job.id)] == [
        State.READY, State.COMPLETE, State.RUNNING, State.FAILED]


def test_out_of_order_pending_does_not_regress(store: Store) -> None:
    job = make_job(store, first=State.RUNNING)
    assert store.record_status(JobStatus(job.id, State.PENDING)) == (State.RUNNING, False)
    assert store.get_job(job.id).state is State.RUNNING


def test_started_ended_exit_code(store: Store) -> None:
    job = make_job(store, first=State.READY)
    r = JobStatus(job.id, State.RUNNING)
    store.record_status(r)
    f = JobStatus(job.id, State.FAILED, exit_code=7)
    store.record_status(f)
    got = store.get_job(job.id)
    assert got.started == r.time and got.ended == f.time
    assert got.state is State.FAILED and got.exit_code == 7


def test_unknown_ids_raise_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.get_job("nope")
    with pytest.raises(NotFound):
        store.history("nope")
    with pytest.raises(NotFound):
        store.record_status(JobStatus("nope", State.RUNNING))
    with pytest.raises(NotFound):
        store.get_workflow("nope")
    with pytest.raises(NotFound):
        store.get_data("nope")
    with pytest.raises(NotFound):
        store.get_trigger("nope")
    assert store.events_after(0) == []   # nothing was written by the failed calls


def test_record_status_sets_native_id(store: Store) -> None:
    job = make_job(store, first=State.READY)
    mark = store.last_event()
    store.record_status(JobStatus(job.id, State.PENDING), native_id="slurm-77")
    assert store.get_job(job.id).context.native_id == "slurm-77"
    assert sorted(k for k, _ in events(store, mark)) == ["job", "status"]


def test_write_batch_in_order(store: Store) -> None:
    a, b = make_job(), make_job()
    out = store.write_batch([
        ("job", (a, JobStatus(a.id, State.READY))),
        ("job", (b, None)),
        ("status", (JobStatus(a.id, State.RUNNING), None)),
        ("status", (JobStatus(b.id, State.PENDING), "n-b")),
        ("status", (JobStatus(a.id, State.COMPLETE, exit_code=0), None)),
        ("status", (JobStatus(a.id, State.RUNNING), None)),
    ])
    assert out == [(a.id, State.READY, True), (a.id, State.RUNNING, True),
                   (b.id, State.PENDING, True), (a.id, State.COMPLETE, True),
                   (a.id, State.COMPLETE, False)]
    assert [h.state for h in store.history(a.id)] == [State.READY, State.RUNNING, State.COMPLETE,
                                                       State.RUNNING]
    got = store.get_job(b.id)
    assert got.state is State.PENDING and got.context.native_id == "n-b"
    assert store.get_job(a.id).exit_code == 0


def test_write_batch_is_atomic(store: Store) -> None:
    """One unknown job id in a batch: nothing of the batch is written."""
    a = make_job(store, first=State.READY)
    b = make_job()
    mark = store.last_event()
    with pytest.raises(NotFound):
        store.write_batch([("job", (b, JobStatus(b.id, State.READY))),
                           ("status", (JobStatus(a.id, State.RUNNING), None)),
                           ("status", (JobStatus("nope", State.RUNNING), None))])
    assert store.last_event() == mark
    assert store.get_job(a.id).state is State.READY
    assert len(store.history(a.id)) == 1
    with pytest.raises(NotFound):
        store.get_job(b.id)


def test_trigger_for_job(store: Store) -> None:
    a = make_job(store)
    tr = store.add_trigger(Trigger(kind="job", watch=[a.id], defn=JobDefn(["/bin/true"])))
    assert store.trigger_for_job(tr.job_id).id == tr.id
    assert store.trigger_for_job(a.id) is None


# -- data -----------------------------------------------------------------------------
@pytest.fixture
def catalog(store: Store) -> dict[str, DataObject]:
    """A few data objects with metadata chosen to trip text-based matching."""
    items = {
        "a": {"project": "alpha", "name": "run-1.h5", "step": 3, "flag": True},
        "b": {"project": "alpha", "name": "run-2.csv", "step": 4, "cfg": {"n": 1, "m": [1, 2]}},
        "c": {"project": "beta", "name": "run-1.h5", "note": 'x", "project": "alpha'},
        "d": {"project": "abc", "name": "a_c%"},
        "e": {"project": "ALPHA", "step": "3"},
    }
    out = {}
    for key, md in items.items():
        out[key] = store.add_data(DataObject(url=f"file:///data/{key}", metadata=md, size=len(key)))
    return out


def ids(objs: list[DataObject], catalog: dict[str, DataObject]) -> set[str]:
    back = {d.id: k for k, d in catalog.items()}
    return {back[d.id] for d in objs}


def test_data_roundtrip(store: Store) -> None:
    d = DataObject(url="sftp://h/x", site="hpc", direction=Direction.GET, size=10,
                   sha256="ab" * 32, media_type="text/csv", job_id="j", workflow_id="w",
                   derived_from="other", metadata={"a": 1, "b": "x", "c": [1, {"d": None}]})
    store.add_data(d)
    got = store.get_data(d.id)
    assert got.to_dict() == d.to_dict()
    assert got.instance_id == store.instance_id


def test_find_exact(store: Store, catalog) -> None:
    assert ids(store.find_data({"project": "alpha"}), catalog) == {"a", "b"}
    assert ids(store.find_data({"name": "run-1.h5"}), catalog) == {"a", "c"}
    assert ids(store.find_data({"project": "Alpha"}), catalog) == set()   # case-sensitive


def test_find_glob_per_field(store: Store, catalog) -> None:
    assert ids(store.find_data({"name": "run-*.h5"}), catalog) == {"a", "c"}
    assert ids(store.find_data({"name": "run-?.*"}), catalog) == {"a", "b", "c"}
    assert ids(store.find_data({"project": "[ab]*"}), catalog) == {"a", "b", "c", "d"}
    assert ids(store.find_data({"name": "*.h5", "project": "b*"}), catalog) == {"c"}


def test_find_and_across_fields(store: Store, catalog) -> None:
    assert ids(store.find_data({"project": "alpha", "name": "run-1.h5"}), catalog) == {"a"}
    assert ids(store.find_data({"project": "alpha", "missing": "x"}), catalog) == set()


def test_find_is_not_text_search(store: Store, catalog) -> None:
    # "c"'s serialized metadata contains "project": "alpha"; its project field does not.
    assert "c" not in ids(store.find_data({"project": "alpha"}), catalog)
    assert ids(store.find_data({"project": "*alpha*"}), catalog) == {"a", "b"}
    # a pattern spanning two fields of the JSON text matches no single field
    assert ids(store.find_data({"name": '*", "step": 3*'}), catalog) == set()
    assert ids(store.find_data({"project": 'alpha", "name": "run-1.h5'}), catalog) == set()
    # SQL LIKE wildcards are literal characters in an exact match
    assert ids(store.find_data({"name": "a_c%"}), catalog) == {"d"}
    assert ids(store.find_data({"name": "abc%"}), catalog) == set()
    assert ids(store.find_data({"project": "a_c"}), catalog) == set()
    # regex syntax is not a pattern language here
    assert ids(store.find_data({"project": "alph.+"}), catalog) == set()


def test_find_non_string_values(store: Store, catalog) -> None:
    assert ids(store.find_data({"step": 3}), catalog) == {"a"}
    assert ids(store.find_data({"step": 4}), catalog) == {"b"}
    assert ids(store.find_data({"flag": True}), catalog) == {"a"}
    assert ids(store.find_data({"cfg": {"m": [1, 2], "n": 1}}), catalog) == {"b"}
    assert ids(store.find_data({"cfg": {"n": 1}}), catalog) == set()


def test_find_string_is_not_number(store: Store, catalog) -> None:
    """The string "3" and the number 3 are different values."""
    assert ids(store.find_data({"step": "3"}), catalog) == {"e"}
    assert ids(store.find_data({"step": 3}), catalog) == {"a"}


def test_find_glob_over_non_string_values(store: Store, catalog) -> None:
    """A glob matches a non-string value's canonical JSON text, field by field."""
    assert ids(store.find_data({"step": "[34]"}), catalog) == {"a", "b", "e"}
    assert ids(store.find_data({"flag": "t*"}), catalog) == {"a"}


def test_failed_add_data_leaves_store_unchanged(store: Store) -> None:
    d = store.add_data(DataObject(url="file:///x", metadata={"k": "v"}))
    mark = store.last_event()
    with pytest.raises(Exception):
        store.add_data(DataObject(url="file:///y", metadata={"k": "v", "z": "1"}, id=d.id))
    assert store.last_event() == mark
    assert [x.id for x in store.find_data({"k": "v"})] == [d.id]
    assert store.find_data({"z": "1"}) == []
    assert store.get_data(d.id).url == "file:///x"


def test_long_metadata_value_is_stored_and_found(store: Store) -> None:
    """A few KB of metadata (a description, a config) must work on every backend."""
    import secrets
    v = secrets.token_hex(4000)      # incompressible, 8000 chars
    d = store.add_data(DataObject(url="file:///x", metadata={"description": v, "k": "x"}))
    assert [x.id for x in store.find_data({"description": v})] == [d.id]
    assert [x.id for x in store.find_data({"description": v[:100] + "*"})] == [d.id]


@pytest.mark.parametrize("md", [{"k" * 300: "v"}, {"k": "a\x00b"}, {"a\x00": "v"}],
                         ids=["key-too-long", "nul-in-value", "nul-in-key"])
def test_unstorable_metadata_is_a_clear_error(store: Store, md: dict) -> None:
    """Same answer on SQLite and PostgreSQL: an LwfmError, and nothing written."""
    from lwfm.errors import LwfmError
    with pytest.raises(LwfmError):
        store.add_data(DataObject(url="file:///x", metadata=md))
    assert store.last_event() == 0 and store.find_data() == []


def test_find_filters_and_all(store: Store) -> None:
    a = store.add_data(DataObject(url="file:///x", job_id="j1", workflow_id="w1", metadata={"k": "v"}))
    b = store.add_data(DataObject(url="file:///y", job_id="j2", workflow_id="w1"))
    assert {d.id for d in store.find_data()} == {a.id, b.id}
    assert [d.id for d in store.find_data(job_id="j2")] == [b.id]
    assert [d.id for d in store.find_data(workflow_id="w1", url="file:///x")] == [a.id]
    assert [d.id for d in store.find_data({"k": "v"}, job_id="j2")] == []


# -- triggers -------------------------------------------------------------------------
def test_trigger_roundtrip_and_queries(store: Store) -> None:
    a, b = make_job(store), make_job(store)
    tr = store.add_trigger(Trigger(kind=TriggerKind.ALL, watch=[a.id, b.id],
                                   defn=JobDefn(["/bin/true"]), states=[State.COMPLETE]))
    dt = store.add_trigger(Trigger(kind="data", pattern={"project": "a*"}, defn=JobDefn(["/bin/true"])))
    got = store.get_trigger(tr.id)
    assert got.to_dict() == tr.to_dict()
    assert {t.id for t in store.triggers(status=TriggerStatus.PENDING)} == {tr.id, dt.id}
    assert [t.id for t in store.triggers(watching=b.id)] == [tr.id]
    assert [t.id for t in store.triggers(kind="data")] == [dt.id]
    assert store.get_trigger(dt.id).pattern == {"project": "a*"}


def test_settle_trigger_exactly_once(store: Store) -> None:
    a = make_job(store)
    tr = store.add_trigger(Trigger(kind="job", watch=[a.id], defn=JobDefn(["/bin/true"])))
    assert store.settle_trigger(tr.id, TriggerStatus.FIRED, fired_by=a.id) is True
    assert store.settle_trigger(tr.id, TriggerStatus.FIRED, fired_by="other") is False
    assert store.settle_trigger(tr.id, TriggerStatus.DEAD, reason="late") is False
    got = store.get_trigger(tr.id)
    assert got.status is TriggerStatus.FIRED and got.fired_by == a.id and got.reason is None
    assert got.fired_at is not None
    assert store.triggers(status="pending") == []


def test_dead_trigger_keeps_reason(store: Store) -> None:
    a = make_job(store)
    tr = store.add_trigger(Trigger(kind="job", watch=[a.id], defn=JobDefn(["/bin/true"])))
    assert store.settle_trigger(tr.id, "dead", reason=f"{a.id} FAILED") is True
    got = store.get_trigger(tr.id)
    assert got.status is TriggerStatus.DEAD and got.reason == f"{a.id} FAILED"
    assert [t.id for t in store.triggers(status="dead")] == [tr.id]


def test_settle_trigger_thread_race(store: Store) -> None:
    a = make_job(store)
    trs = [store.add_trigger(Trigger(kind="job", watch=[a.id], defn=JobDefn(["/bin/true"])))
           for _ in range(5)]
    wins: list[tuple[str, int]] = []
    errors: list[BaseException] = []
    gate = threading.Barrier(10)

    def contend(n: int) -> None:
        try:
            gate.wait()
            for tr in trs:
                if store.settle_trigger(tr.id, TriggerStatus.FIRED, fired_by=f"t{n}"):
                    wins.append((tr.id, n))
        except BaseException as e:  # noqa: BLE001 - surfaced by the assert below
            errors.append(e)

    threads = [threading.Thread(target=contend, args=(n,)) for n in range(10)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert errors == []
    assert sorted(w[0] for w in wins) == sorted(t.id for t in trs)   # one winner each
    for tid, n in wins:
        assert store.get_trigger(tid).fired_by == f"t{n}"


# -- journal --------------------------------------------------------------------------
def test_every_write_is_journaled(store: Store) -> None:
    assert store.last_event() == 0
    wf = store.add_workflow(Workflow(name="w"))
    job = make_job(store, workflow_id=wf.id, first=State.READY)
    store.record_status(JobStatus(job.id, State.INFO))
    store.set_native_id(job.id, "n1")
    d = store.add_data(DataObject(url="file:///x", metadata={"a": "b"}))
    tr = store.add_trigger(Trigger(kind="data", pattern={"a": "b"}, defn=JobDefn(["/bin/true"])))
    store.settle_trigger(tr.id, "fired", fired_by=d.id)
    store.settle_trigger(tr.id, "fired", fired_by=d.id)   # lost race: no event
    got = events(store)
    kinds = [k for k, _ in got]
    assert kinds == ["workflow", "job", "status", "status", "job", "data", "trigger", "trigger"]
    assert got[0][1] == wf.id and got[1][1] == job.id and got[4][1] == job.id
    assert got[5][1] == d.id and got[6][1] == tr.id == got[7][1]
    # status refs are the status seqs, increasing
    assert int(got[2][1]) < int(got[3][1])
    seqs = [s for s, _, _ in store.events_after(0)]
    assert seqs == sorted(seqs) and store.last_event() == seqs[-1]
    assert [k for _, k, _ in store.events_after(seqs[4])] == ["data", "trigger", "trigger"]
    assert len(store.events_after(0, limit=3)) == 3


# -- logs -----------------------------------------------------------------------------
def test_logs(store: Store) -> None:
    store.add_log(LogRecord("one", job_id="j1", workflow_id="w"))
    store.add_log(LogRecord("two", level="ERROR", job_id="j2", workflow_id="w"))
    assert [r.message for r in store.logs(workflow_id="w")] == ["one", "two"]
    got = store.logs(job_id="j2")
    assert len(got) == 1 and got[0].level == "ERROR" and got[0].message == "two"
    assert isinstance(got[0].time, datetime) and got[0].time.tzinfo is not None


# -- many processes -------------------------------------------------------------------
WORKER = textwrap.dedent("""
    import os, sys, time
    from lwfm.model import DataObject, JobStatus, State
    from lwfm.store import Store
    url, shared, own, gate, n, w = sys.argv[1:7]
    n = int(n)
    s = Store(url)
    while not os.path.exists(gate):
        time.sleep(0.005)
    for i in range(n):
        s.record_status(JobStatus(shared if i % 2 else own, State.INFO, info=f"{w}:{i}"))
        s.add_data(DataObject(url=f"file:///{w}/{i}", metadata={"w": w, "i": i}))
    s.record_status(JobStatus(own, State.COMPLETE, exit_code=0))
    s.close()
    print("done", w)
""")


@pytest.mark.slow
def test_many_processes_lose_nothing(store: Store, store_url: str, tmp_path: Path) -> None:
    procs_n, n = 8, 200
    shared = make_job(store, first=State.RUNNING)
    own = [make_job(store, first=State.RUNNING) for _ in range(procs_n)]
    gate = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, store_url, shared.id, own[w].id,
                               str(gate), str(n), f"w{w}"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for w in range(procs_n)]
    time.sleep(1.0)   # let every worker open the store, then release them together
    gate.touch()
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert "database is locked" not in err
    assert sum(len(store.history(j.id)) for j in own) == procs_n * (1 + n // 2 + 1)
    assert len(store.history(shared.id)) == 1 + procs_n * (n // 2)
    assert all(store.get_job(j.id).state is State.COMPLETE for j in own)
    assert store.get_job(shared.id).state is State.RUNNING
    assert len(store.find_data()) == procs_n * n
    for w in range(procs_n):
        infos = [h.info for h in store.history(own[w].id)[1:-1]]
        assert infos == [f"w{w}:{i}" for i in range(0, n, 2)]   # each writer's order kept
        assert len(store.find_data({"w": f"w{w}"})) == n
    assert len(store.find_data({"i": 7})) == procs_n
    got = events(store)
    assert sum(k == "status" for k, _ in got) == 1 + procs_n + procs_n * (n + 1)
    assert sum(k == "data" for k, _ in got) == procs_n * n


TRIGGER_WORKER = textwrap.dedent("""
    import os, sys, time
    from lwfm.store import Store
    url, gate, w, *tids = sys.argv[1:]
    s = Store(url)
    while not os.path.exists(gate):
        time.sleep(0.005)
    for t in tids:
        if s.settle_trigger(t, "fired", fired_by=w):
            print(t)
    s.close()
""")


@pytest.mark.slow
def test_settle_trigger_process_race(store: Store, store_url: str, tmp_path: Path) -> None:
    a = make_job(store)
    trs = [store.add_trigger(Trigger(kind="job", watch=[a.id], defn=JobDefn(["/bin/true"])))
           for _ in range(20)]
    gate = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", TRIGGER_WORKER, store_url, str(gate), f"p{w}",
                               *[t.id for t in trs]], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for w in range(6)]
    time.sleep(1.0)
    gate.touch()
    won: list[str] = []
    for w, p in enumerate(procs):
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        for tid in out.split():
            won.append(tid)
            assert store.get_trigger(tid).fired_by == f"p{w}"
    assert sorted(won) == sorted(t.id for t in trs)   # every trigger exactly one winner
    assert sum(k == "trigger" for k, _ in events(store)) == 2 * len(trs)


# -- property: every field of any JSON metadata finds its object -----------------------
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                max_size=12)
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53) |
    st.floats(allow_nan=False, allow_infinity=False) | _text,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(_text, kids, max_size=3),
    max_leaves=6)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(md=st.dictionaries(st.text(min_size=1, max_size=12).filter(lambda k: "\x00" not in k),
                          _json, min_size=1, max_size=4))
def test_find_any_metadata_roundtrip(store: Store, md: dict) -> None:
    d = store.add_data(DataObject(url="file:///p", metadata=md))
    assert store.get_data(d.id).metadata == md
    exact = {k: v for k, v in md.items() if not (isinstance(v, str) and any(c in v for c in "*?["))}
    for k, v in exact.items():
        found = store.find_data({k: v})
        assert d.id in [x.id for x in found], (k, v)
        assert all(x.metadata.get(k) == v and type(x.metadata.get(k)) is type(v) for x in found)
    if exact:
        assert d.id in [x.id for x in store.find_data(exact)]


def test_many_processes_open_a_fresh_store_at_once(store_url: str) -> None:
    """The first open creates the schema: eight processes racing to do it all succeed and
    agree on one instance id."""
    code = "import sys; from lwfm.store import Store; print(Store(sys.argv[1]).instance_id)"
    procs = [subprocess.Popen([sys.executable, "-c", code, store_url], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(8)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, [err for _, err in outs if err]
    assert len({out.strip() for out, _ in outs}) == 1


_OPENER = """
import sys
from sqlalchemy import text
from lwfm.store.sql import make_engine
for url in sys.stdin:
    try:
        with make_engine(url.strip()).connect() as c:
            c.execute(text("select 1"))
        print("ok", flush=True)
    except Exception as e:
        print(type(e).__name__, str(e).splitlines()[0], flush=True)
"""


def test_processes_opening_a_fresh_sqlite_file_in_step_all_succeed(tmp_path: Path) -> None:
    """Switching a new SQLite file to WAL needs an exclusive lock, and SQLite refuses it at
    once (no busy timeout) while another opener holds a lock. Eight processes, released
    together on each of 40 new files, must all get a connection: a CLI command racing the
    first `lwfm run` in a new home once failed with "database is locked"."""
    procs = [subprocess.Popen([sys.executable, "-c", _OPENER], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(8)]
    failures = []
    try:
        for r in range(40):
            for p in procs:
                p.stdin.write(f"sqlite:///{tmp_path / f's{r}.db'}\n")
                p.stdin.flush()
            failures += [x for x in (p.stdout.readline().strip() for p in procs) if x != "ok"]
    finally:
        for p in procs:
            p.stdin.close()
            p.wait(timeout=60)
    assert failures == []
