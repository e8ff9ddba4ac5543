"""Globus transfers and their faults, offline: the Globus cloud cannot be reached from
here, so every test runs against globus-sdk's testing fakes (``globus_sdk.testing`` with
``responses``, tests/_globus_fake.py) with sockets blocked (pytest-socket)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lwfm import ChecksumMismatch, Manager, SiteError, State
from tests._globus_fake import FakeGlobus, fake_globus  # noqa: F401 - the fixture
from tests._globus_helpers import archive, logged_in_with, login, lwfm_cli  # noqa: F401

pytestmark = pytest.mark.globus

# -- transfers: third-party, checksum mismatches, faults, transient errors -------------------

def test_third_party_transfer_between_collections(home: Path, archive: FakeGlobus,
                                                  tmp_path: Path) -> None:
    """Offline against the fakes: a collection-to-collection copy is one Globus task that
    lwfm hands its own sha256 to check both ends against; both copies are recorded."""
    assert login(home, "other").exit_code == 0
    src = tmp_path / "raw.dat"
    src.write_bytes(b"raw\n" * 1000)
    with Manager() as m:
        first = m.put(src, "raw.dat", site="archive")
        d = m.transfer(first.url, "mirror/raw.dat", site="other")
        assert d.url == f"globus://{archive.other}/mirror/raw.dat" and d.site == "other"
        assert archive.path(archive.other, "/mirror/raw.dat").read_bytes() == src.read_bytes()
        t = archive.task()
        assert (t.source, t.destination) == (archive.archive, archive.other)
        assert t.items[0]["external_checksum"] == first.sha256 == d.sha256
        assert t.verify_checksum and t.sync_level == 3   # the API's number for "checksum"
        assert d.metadata["globus_checksum_algorithm"] == "SHA256"
        assert d.metadata["globus_verified"] is True and d.metadata["globus_copied"] is True
        used = m.store.get_data(d.derived_from)
        assert used.url == first.url and used.direction.value == "get"
        assert used.site == "archive"   # the original is on the archive's collection
        assert used.derived_from == first.id and used.job_id == d.job_id
        job = m.status(d.job_id)
        assert job.state is State.COMPLETE and job.defn.entry["op"] == "transfer"
    # checksum sync: the same copy again (from the command line) moves nothing and says so
    import json
    r = lwfm_cli(home, "transfer", first.url, "mirror/raw.dat", "--site", "other", "--json")
    assert r.exit_code == 0, r.output
    again = json.loads(r.output)
    assert again["metadata"]["globus_copied"] is False and again["sha256"] == first.sha256
    with Manager() as m:
        assert "already up to date" in m.history(again["job_id"])[-1].info


def test_get_whose_bytes_differ_is_a_checksum_mismatch(home: Path, archive: FakeGlobus,
                                                       tmp_path: Path) -> None:
    """Offline against the fakes: Globus reports success but the local copy's sha256 is not
    the one lwfm recorded: ChecksumMismatch, the job FAILED, the bad copy moved aside."""
    src = tmp_path / "a.dat"
    src.write_bytes(b"good bytes\n")
    dest = tmp_path / "back" / "a.dat"
    with Manager() as m:
        m.put(src, "a.dat", site="archive")
        archive.scenario = {"corrupt": True}
        with pytest.raises(ChecksumMismatch, match="sha256"):
            m.get("a.dat", dest, site="archive")
        assert not dest.exists()
        assert [p.name for p in dest.parent.iterdir()][0].startswith(".a.dat.lwfm-mismatch-")
        job = [j for j in m.store.find_jobs() if j.defn.entry["op"] == "get"][0]
        assert job.state is State.FAILED
        assert "checksum mismatch" in m.history(job.id)[-1].info
        assert not [d for d in m.find() if d.url == dest.as_uri()]   # no copy recorded


def test_source_changed_since_lwfm_recorded_it_fails_within_one_poll(
        home: Path, archive: FakeGlobus, tmp_path: Path) -> None:
    """Offline against the fakes: the original on the collection no longer has the sha256
    lwfm recorded; Globus's VERIFY_CHECKSUM fault (task still ACTIVE) is a ChecksumMismatch
    on the first poll, and the task is cancelled."""
    assert login(home, "other").exit_code == 0
    src = tmp_path / "a.dat"
    src.write_bytes(b"version 1\n")
    with Manager() as m:
        first = m.put(src, "a.dat", site="archive")
        archive.path(archive.archive, "/store/a.dat").write_bytes(b"version 2\n")
        with pytest.raises(ChecksumMismatch, match="VERIFY_CHECKSUM"):
            m.transfer(first.url, "a.dat", site="other")
        t = archive.task()
        assert t.polls == 1 and t.fatal_error == {"code": "CANCELED", "description": "canceled"}


@pytest.mark.parametrize("on_fault", ["fail", "info"])
def test_active_task_with_faults(home: Path, fake_globus: FakeGlobus, tmp_path: Path,
                                 on_fault: str) -> None:
    """Offline against the fakes: a task that stays ACTIVE while its event list fills with
    errors is reported on the first poll: FAILED (task cancelled) or INFO with the fault,
    then followed to its end."""
    src = logged_in_with(home, fake_globus, tmp_path, on_fault=on_fault)
    faults = [("PERMISSION_DENIED", "permission denied"), ("QUOTA_EXCEEDED", "quota exceeded")]
    fake_globus.scenario = {"faults": faults, "recover_at": 3}
    with Manager() as m:
        if on_fault == "fail":
            with pytest.raises(SiteError, match="PERMISSION_DENIED.*QUOTA_EXCEEDED"):
                m.put(src, "a.dat", site="archive")
            t = fake_globus.task()
            assert t.polls == 1 and t.status == "FAILED"
            job = m.store.find_jobs()[0]
            assert job.state is State.FAILED
            assert "lwfm cancelled it" in m.history(job.id)[-1].info
        else:
            d = m.put(src, "a.dat", site="archive")
            hist = m.history(d.job_id)
            info = [s for s in hist if s.state is State.INFO]
            assert len(info) == 1 and "PERMISSION_DENIED" in info[0].info
            assert hist[-1].state is State.COMPLETE and fake_globus.task().polls == 3
            log = m.log(d.job_id)
            assert "ERROR PERMISSION_DENIED" in log and "INFO SUCCEEDED" in log


def test_transient_errors_are_retried_with_backoff(home: Path, archive: FakeGlobus,
                                                   tmp_path: Path) -> None:
    """Offline against the fakes: two 503 answers to a task poll are retried (globus-sdk's
    RetryConfig, backoff capped by max_backoff_s) and the transfer completes."""
    src = tmp_path / "a.dat"
    src.write_text("x\n")
    archive.flaky_polls = 2
    with Manager() as m:
        d = m.put(src, "a.dat", site="archive")
        assert archive.flaky_polls == 0 and m.status(d.job_id).state is State.COMPLETE


def test_an_outage_longer_than_the_sdks_retries_is_ridden_out(home: Path,
                                                             fake_globus: FakeGlobus,
                                                             tmp_path: Path) -> None:
    """Offline against the fakes: with retries = 1, three 503s in a row outlast one poll's
    retries; the job shows INFO 'retrying' (not FAILED) and completes once Globus answers."""
    src = logged_in_with(home, fake_globus, tmp_path, retries=1)
    fake_globus.flaky_polls = 3
    with Manager() as m:
        d = m.put(src, "a.dat", site="archive")
        hist = m.history(d.job_id)
        assert [s.state for s in hist][-1] is State.COMPLETE
        assert any(s.state is State.INFO and "503" in s.info and "retrying" in s.info
                   for s in hist)


def test_unretried_outage_fails_the_transfer_job(home: Path, fake_globus: FakeGlobus,
                                                 tmp_path: Path) -> None:
    """Offline against the fakes: with retries = 0 a 503 is not retried: the job is FAILED
    with the reason, and put raises it."""
    src = logged_in_with(home, fake_globus, tmp_path, retries=0)
    fake_globus.flaky_polls = 1
    with Manager() as m:
        with pytest.raises(SiteError, match="503.*may still be running"):
            m.put(src, "a.dat", site="archive")
        assert m.store.find_jobs()[0].state is State.FAILED


def test_another_process_sees_the_task_through_documented_responses(
        home: Path, archive: FakeGlobus) -> None:
    """Offline, with globus_sdk.testing response sets registered from Globus's documented
    task documents: a process that did not start the transfer polls it (as `lwfm status`
    does): ACTIVE is RUNNING, error events are FAILED at once and the task is cancelled
    (the shipped cancel_task fixture), SUCCEEDED is FINISHING (the starter checks the
    checksums), a cancelled task is CANCELLED."""
    from globus_sdk.testing import get_last_request, load_response

    from lwfm import JobContext
    from tests._globus_fake import register_task_documents
    tid = register_task_documents()
    rsps = archive.rsps
    with Manager() as m:
        jobs = m.site("archive").jobs
        ctx = JobContext(site="archive", native_id=tid)
        for task, events, state in (("active", "quiet", State.RUNNING),
                                    ("active", "faults", State.FAILED),
                                    ("succeeded", "quiet", State.FINISHING),
                                    ("cancelled", "quiet", State.CANCELLED)):
            rsps.reset()
            load_response("lwfm.get_task", case=task, requests_mock=rsps)
            load_response("lwfm.task_event_list", case=events, requests_mock=rsps)
            load_response("transfer.cancel_task", requests_mock=rsps)
            st = jobs.status(ctx)
            assert st.state is state, (task, events, st)
            cancelled = get_last_request(requests_mock=rsps).url.endswith(f"/task/{tid}/cancel")
            assert cancelled == (state is State.FAILED)


def test_a_transfer_whose_starter_died_is_finished_by_another_process(
        home: Path, archive: FakeGlobus, tmp_path: Path) -> None:
    """Offline against the fakes: the starter is gone after submitting (what kill -9 leaves:
    the job RUNNING with its task id). Another process sees FINISHING once the task
    succeeded, and `lwfm transfer --finish JOB` checks and records the copies."""
    import json
    src = tmp_path / "a.dat"
    src.write_text("orphan\n")
    with Manager() as m:   # what `m.put` does up to the follow, then the process "dies"
        tr = m.site("archive").repo.transfers
        defn = tr.plan("put", str(src), "orphan/a.dat")
        defn.entry["metadata"] = {"kind": "orphan"}
        job = m._new_job(defn, None, None, None, None)
        m.runner.insert(job, __import__("lwfm").JobStatus(job.id, State.PENDING))
        m.runner.launch(job, m.site("archive"))
    with Manager() as other:
        assert other.status(job.id).state is State.FINISHING   # the task SUCCEEDED meanwhile
        assert f"lwfm transfer --finish {job.id}" in other.history(job.id)[-1].info
    r = lwfm_cli(home, "transfer", "--finish", job.id[:8], "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["url"] == f"globus://{archive.archive}/store/orphan/a.dat"
    assert d["metadata"]["kind"] == "orphan" and d["job_id"] == job.id
    with Manager() as m:
        assert m.status(job.id).state is State.COMPLETE
        assert m.store.get_data(d["derived_from"]).url == src.as_uri()
        r = lwfm_cli(home, "transfer", "--finish", job.id)
        assert r.exit_code == 1 and "already ended COMPLETE" in r.output
