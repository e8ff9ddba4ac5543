"""lwfm.model: the state machine, validation and JSON round trips of every record."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from lwfm.model import (TERMINAL, DataObject, Direction, EntryKind, Job, JobContext, JobDefn,
                        JobStatus, LogRecord, State, Trigger, TriggerKind, TriggerStatus,
                        Workflow, advance, iso, new_id, parse_time)

S = State
# (current, new) -> expected; covers every pair below.
ADVANCE = {
    (None, S.READY): S.READY, (None, S.INFO): S.INFO, (None, S.COMPLETE): S.COMPLETE,
    (None, S.UNKNOWN): S.UNKNOWN,
    (S.READY, S.PENDING): S.PENDING, (S.READY, S.RUNNING): S.RUNNING,
    (S.READY, S.COMPLETE): S.COMPLETE, (S.READY, S.INFO): S.READY, (S.READY, S.UNKNOWN): S.READY,
    (S.PENDING, S.READY): S.PENDING, (S.PENDING, S.RUNNING): S.RUNNING,
    (S.RUNNING, S.PENDING): S.RUNNING, (S.RUNNING, S.READY): S.RUNNING,
    (S.RUNNING, S.RUNNING): S.RUNNING, (S.RUNNING, S.INFO): S.RUNNING,
    (S.RUNNING, S.FINISHING): S.FINISHING, (S.RUNNING, S.FAILED): S.FAILED,
    (S.RUNNING, S.CANCELLED): S.CANCELLED, (S.FINISHING, S.RUNNING): S.FINISHING,
    (S.FINISHING, S.COMPLETE): S.COMPLETE,
    (S.INFO, S.RUNNING): S.RUNNING, (S.INFO, S.INFO): S.INFO, (S.UNKNOWN, S.PENDING): S.PENDING,
    (S.UNKNOWN, S.INFO): S.INFO,      # neither carries progress: the newer report shows
}


@pytest.mark.parametrize("cur,new", list(ADVANCE))
def test_advance_table(cur, new) -> None:
    assert advance(cur, new) is ADVANCE[(cur, new)]


@pytest.mark.parametrize("term", sorted(TERMINAL, key=lambda s: s.value))
@pytest.mark.parametrize("new", list(State))
def test_terminal_is_final(term: State, new: State) -> None:
    assert advance(term, new) is term


def test_never_backwards_over_any_sequence() -> None:
    """Folding any sequence of reports never lowers the rank of a ranked state."""
    import itertools
    ranked = [s for s in State if s.rank is not None]
    for seq in itertools.product(list(State), repeat=3):
        cur = None
        for s in seq:
            nxt = advance(cur, s)
            if cur is not None and cur.rank is not None:
                assert nxt.rank is not None and nxt.rank >= cur.rank
            if cur is not None and cur.terminal:
                assert nxt is cur
            cur = nxt
    assert {s for s in ranked if s.terminal} == set(TERMINAL)


def test_state_properties() -> None:
    assert S.COMPLETE.terminal and S.FAILED.terminal and S.CANCELLED.terminal
    assert not S.RUNNING.terminal and not S.INFO.terminal
    assert S.INFO.rank is None and S.UNKNOWN.rank is None
    assert S.READY.rank < S.PENDING.rank < S.RUNNING.rank < S.FINISHING.rank < S.COMPLETE.rank


# -- JobDefn --------------------------------------------------------------------------
def test_defn_argv_string_becomes_list() -> None:
    d = JobDefn("/bin/true")
    assert d.entry == ["/bin/true"] and d.kind is EntryKind.ARGV and d.name == "/bin/true"


@pytest.mark.parametrize("kw", [
    dict(entry=[]), dict(entry=["ok", 3]), dict(entry={"a": 1}),
    dict(entry="", kind="shell"), dict(entry="   ", kind="shell"), dict(entry=["x"], kind="shell"),
    dict(entry="pkg.mod", kind="python"), dict(entry="", kind="python"),
    dict(entry=["x"], args=["a", 1]), dict(entry="x", kind="nope"),
])
def test_defn_validation(kw) -> None:
    with pytest.raises(ValueError):
        JobDefn(**kw)


def test_defn_kinds_and_names() -> None:
    assert JobDefn("echo hi | wc", kind="shell").kind is EntryKind.SHELL
    p = JobDefn("pkg.mod:main", kind=EntryKind.PYTHON)
    assert p.name == "pkg.mod:main"
    assert JobDefn({"name": "bell", "qasm": "..."}, kind="payload").name == "bell"
    assert JobDefn({"qasm": "..."}, kind="payload").name == "payload"
    assert JobDefn(["a"] * 100).name == " ".join(["a"] * 100)[:80]
    assert JobDefn(["a"], name="mine").name == "mine"


# -- round trips ----------------------------------------------------------------------
T0 = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)


def samples() -> list:
    defn = JobDefn(["python", "-c", "print(1)"], args=["x"], env={"A": "1"}, cwd="/tmp",
                   site="hpc", compute_type="gpu", resources={"nodes": 2})
    ctx = JobContext(parent_id=new_id(), workflow_id=new_id(), site="hpc", native_id="42")
    return [
        defn,
        JobDefn({"name": "c", "gates": [["h", 0]]}, kind="payload"),
        ctx,
        JobStatus(ctx.job_id, S.FAILED, native_state="F", info="boom", time=T0, exit_code=2),
        Job(defn=defn, context=ctx, state=S.RUNNING, exit_code=None, created=T0,
            started=T0 + timedelta(seconds=1), ended=None, triggered_by=new_id(),
            instance_id=new_id()),
        Workflow(name="w", description="d", props={"k": [1, {"z": None}]}, created=T0,
                 instance_id=new_id()),
        DataObject(url="file:///x", site="s", direction=Direction.GET, metadata={"a": 1},
                   size=3, sha256="0" * 64, media_type="text/plain", job_id=new_id(),
                   workflow_id=new_id(), derived_from=new_id(), time=T0, instance_id=new_id()),
        Trigger(kind=TriggerKind.ANY, defn=defn, watch=[new_id(), new_id()],
                states=[S.COMPLETE, S.FAILED], parent_id=new_id(), workflow_id=new_id(),
                status=TriggerStatus.FIRED, fired_by=new_id(), reason="r", created=T0,
                fired_at=T0 + timedelta(seconds=2), instance_id=new_id()),
        Trigger(kind="data", defn=defn, pattern={"p": "a*"}),
        LogRecord("hello", level="WARNING", job_id=new_id(), workflow_id=new_id(), time=T0),
    ]


@pytest.mark.parametrize("obj", samples(), ids=lambda o: type(o).__name__)
def test_roundtrip(obj) -> None:
    d = obj.to_dict()
    text = json.dumps(d)                      # plain JSON, no custom encoder needed
    back = type(obj).from_dict(json.loads(text))
    assert back == obj
    assert back.to_dict() == d


def test_every_record_type_is_covered() -> None:
    covered = {type(o) for o in samples()}
    assert covered == {JobDefn, JobContext, JobStatus, Job, Workflow, DataObject, Trigger, LogRecord}


def test_from_dict_rejects_unknown_fields() -> None:
    with pytest.raises(ValueError, match="unknown field"):
        Workflow.from_dict({"name": "w", "bogus": 1})
    with pytest.raises(ValueError):
        JobStatus.from_dict({"job_id": "j", "state": "NOT_A_STATE"})


def test_enums_and_times_serialize_as_strings() -> None:
    st = JobStatus("j", S.RUNNING, time=T0)
    d = st.to_dict()
    assert d["state"] == "RUNNING" and d["time"] == "2026-01-02T03:04:05.678000+00:00"
    data = DataObject(url="u", direction="get")
    assert data.direction is Direction.GET and data.to_dict()["direction"] == "get"


def test_times() -> None:
    naive = parse_time("2026-01-02T03:04:05")
    assert naive.tzinfo is not None and naive.utcoffset() == timedelta(0)
    assert parse_time("2026-01-02T03:04:05Z") == parse_time("2026-01-02T03:04:05+00:00")
    plus2 = parse_time("2026-01-02T05:04:05+02:00")
    assert iso(plus2) == "2026-01-02T03:04:05+00:00"
    assert iso(None) is None and parse_time(None) is None


def test_context_originator_and_child() -> None:
    root = JobContext(workflow_id="w", site="a")
    assert root.originator_id == root.job_id
    kid = root.child(site="b")
    assert kid.parent_id == root.job_id and kid.originator_id == root.job_id
    assert kid.workflow_id == "w" and kid.site == "b" and kid.job_id != root.job_id
    grandkid = kid.child()
    assert grandkid.originator_id == root.job_id and grandkid.site == "b"


def test_ids_unique_uuid4() -> None:
    many = {new_id() for _ in range(1000)}
    assert len(many) == 1000
    assert all(len(i) == 36 and i[14] == "4" for i in many)


# -- Trigger validation ---------------------------------------------------------------
def test_trigger_validation() -> None:
    d = JobDefn(["/bin/true"])
    with pytest.raises(ValueError, match="pattern"):
        Trigger(kind="data", defn=d)
    for kind in ("job", "all", "any"):
        with pytest.raises(ValueError, match="watch"):
            Trigger(kind=kind, defn=d)
    with pytest.raises(ValueError):
        Trigger(kind="sometimes", defn=d, watch=["x"])
    with pytest.raises(ValueError):
        Trigger(kind="job", defn=d, watch=["x"], states=["DONE"])
    with pytest.raises(ValueError):
        Trigger(kind="job", defn=d, watch=["x"], status="maybe")


def test_trigger_defaults() -> None:
    a = Trigger(kind="job", defn=JobDefn(["/bin/true"]), watch=["x"])
    b = Trigger(kind="job", defn=JobDefn(["/bin/true"]), watch=["x"])
    assert a.states == [S.COMPLETE] and a.status is TriggerStatus.PENDING
    assert a.job_id != b.job_id and a.id != b.id and a.job_id != a.id
    c = Trigger(kind="all", defn=JobDefn(["/bin/true"]), watch=["x", "y"], states=["FAILED"])
    assert c.states == [S.FAILED] and c.kind is TriggerKind.ALL
