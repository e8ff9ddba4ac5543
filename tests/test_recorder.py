"""The group-commit writer: its linger adapts to load, and a flush never waits it out."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import lwfm.recorder as recorder
from lwfm.model import Job, JobContext, JobDefn, JobStatus, State
from lwfm.recorder import Recorder
from lwfm.store import Store


def job_op() -> tuple[str, tuple[Job, JobStatus]]:
    job = Job(defn=JobDefn(["/bin/true"]), context=JobContext(site="local"))
    return "job", (job, JobStatus(job.id, State.PENDING))


class SlowStore(Store):
    """A real SQLite store whose every transaction costs ``delay`` more, as a commit
    on a slow disk does; it counts the ops per transaction."""

    delay = 0.0

    def __init__(self, url: str):
        super().__init__(url)
        self.batches: list[int] = []

    def write_batch(self, ops, conn=None):  # noqa: ANN001, ANN201
        time.sleep(self.delay)
        self.batches.append(len(ops))
        return super().write_batch(ops, conn)


@pytest.fixture
def store(tmp_path: Path):
    s = SlowStore(f"sqlite:///{tmp_path / 'r.db'}")
    yield s
    s.close()


def test_flush_does_not_wait_out_the_linger(store: SlowStore, monkeypatch) -> None:
    monkeypatch.setattr(recorder, "_LINGER_S", 30.0)
    rec = Recorder(store, lambda _r: None)
    try:
        op = job_op()
        rec.put(op)
        rec.flush(timeout=10)  # would raise after 10 s if the writer lingered its 30 s
        assert store.get_job(op[1][0].id).state is State.PENDING
    finally:
        rec.close()


def test_a_full_batch_is_written_without_waiting_for_the_linger(store: SlowStore,
                                                                 monkeypatch) -> None:
    monkeypatch.setattr(recorder, "_LINGER_S", 30.0)
    monkeypatch.setattr(recorder, "_BUSY_BATCH", 20)
    written = threading.Event()
    rec = Recorder(store, lambda _r: written.set())
    try:
        for _ in range(20):
            rec.put(job_op())
        assert written.wait(10), "20 queued ops (a full batch) were not written"
        assert store.batches == [20]
    finally:
        rec.close()


def test_linger_grows_under_load_and_shrinks_when_idle(store: SlowStore) -> None:
    store.delay = 0.01  # ops keep arriving while each transaction runs
    rec = Recorder(store, lambda _r: None)
    stop = threading.Event()

    def producer() -> None:
        while not stop.is_set():
            rec.put(job_op())
            time.sleep(0.0005)

    th = threading.Thread(target=producer)
    th.start()
    try:
        deadline = time.monotonic() + 20
        while rec._linger < recorder._LINGER_BUSY_S and time.monotonic() < deadline:
            time.sleep(0.01)
        assert rec._linger == recorder._LINGER_BUSY_S
        time.sleep(0.1)  # a few batches at the full linger (the first ones set the floor)
    finally:
        stop.set()
        th.join()
    rec.flush()
    assert max(store.batches) > 10 * min(store.batches)  # batches grew with the linger
    for _ in range(8):  # each write that leaves the queue empty halves the linger
        rec.put(job_op())
        rec.flush()
    assert rec._linger == recorder._LINGER_S
    rec.close()
    assert sum(store.batches) == len(store.find_jobs())


def test_an_op_error_goes_to_its_owner_and_nowhere_else(store: SlowStore, caplog) -> None:
    """A write that fails raises in the thread that waits for it; a report no one waits
    for is logged at ERROR; neither surfaces in an unrelated flush, and the rest lands."""
    from lwfm.errors import NotFound
    rec = Recorder(store, lambda _r: None)
    try:
        good = job_op()
        rec.put(good)
        with pytest.raises(NotFound, match="no-such-job"):
            rec.write(("status", (JobStatus("no-such-job", State.RUNNING), None)))
        rec.put(("status", (JobStatus("orphan-report", State.COMPLETE), None)))
        later = job_op()
        rec.put(later)
        rec.flush()  # nobody else's error is raised here
        assert store.get_job(good[1][0].id) and store.get_job(later[1][0].id)
        assert any(r.levelname == "ERROR" and "orphan-report" in r.getMessage()
                   for r in caplog.records)
    finally:
        rec.close()
