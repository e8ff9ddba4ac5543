"""psij statuses as lwfm's, with every way a batch job can end told apart.

A job is COMPLETE only when it exited 0; every other end is FAILED or CANCELLED with an
``info`` that says what happened, in the words of the scheduler where it had any: over
its time limit, out of memory, its node failed, cancelled outside lwfm, or gone from the
queue before lwfm saw how it ended.
"""

from __future__ import annotations

import re
from pathlib import Path

from psij import JobState
from psij import JobStatus as PsijStatus

from lwfm.model import JobStatus, State

_ENDS = {
    "TIMEOUT": "over its time limit: the scheduler stopped it",
    "OUT_OF_MEMORY": "out of memory: the scheduler killed it past its memory limit",
    "NODE_FAIL": "its node failed: the scheduler ended it",
    "BOOT_FAIL": "its node failed to boot",
    "PREEMPTED": "preempted by the scheduler",
    "DEADLINE": "it missed its deadline",
}


#: Slurm's own notes in a job's stderr (slurmstepd writes them) -> the state they mean;
#: they outlive the queue entry, so they tell how a purged job ended.
_NOTES = [
    (re.compile(r"Exceeded job memory limit|oom[-_ ]kill|OUT_OF_MEMORY", re.I), "OUT_OF_MEMORY"),
    (re.compile(r"\*\*\* JOB \S+ ON \S+ CANCELLED AT \S+ DUE TO TIME LIMIT"), "TIMEOUT"),
    (re.compile(r"\*\*\* JOB \S+ ON \S+ CANCELLED AT \S+ DUE TO NODE FAIL"), "NODE_FAIL"),
    (re.compile(r"\*\*\* JOB \S+ ON \S+ CANCELLED AT \S+ DUE TO PREEMPTION"), "PREEMPTED"),
    (re.compile(r"\*\*\* JOB \S+ ON \S+ CANCELLED AT \S+ \*\*\*"), "CANCELLED"),
]
_TAIL = 16384


def slurm_note(stderr: Path) -> str | None:
    """The end Slurm noted in the job's stderr (its last 16 KiB), if any."""
    try:
        with open(stderr, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - _TAIL))
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    for pattern, state in _NOTES:
        if pattern.search(text):
            return state
    return None


def lwfm_status(job_id: str, st: PsijStatus, native_id: str, work_dir: Path,
                stderr: Path | None = None) -> JobStatus:
    """The lwfm status for psij's ``st`` of job ``job_id`` (native id ``native_id``);
    ``stderr``: the job's, where Slurm notes why it ended a job."""
    meta = st.metadata or {}
    slurm = meta.get("slurm_state")
    if st.state.final and slurm in (None, "FAILED", "CANCELLED") and stderr is not None:
        # A kill by the memory gatherer shows as FAILED (signal 9) in the queue; a purged
        # job is not in the queue at all: Slurm's note in its stderr says which end it was.
        note = slurm_note(stderr)
        if note is not None and (slurm is None or note == "OUT_OF_MEMORY"):
            slurm = note
            if note == "CANCELLED":
                st = PsijStatus(JobState.CANCELED, metadata={**meta, "slurm_state": note})
    reason = meta.get("reason")
    native = str(slurm or st.state.name)
    if st.state is JobState.QUEUED:
        return JobStatus(job_id, State.PENDING, native_state=native,
                         info=f"waiting in the queue: {reason}" if reason else None)
    where = _where(meta)
    if st.state is JobState.ACTIVE:
        return JobStatus(job_id, State.RUNNING, native_state=native,
                         info=f"running {where} (job {native_id})" if where else None)
    if st.state is JobState.CANCELED:
        return JobStatus(job_id, State.CANCELLED, native_state=native,
                         info=f"cancelled outside lwfm (scancel or an administrator), job {native_id}")
    if not st.state.final:
        return JobStatus(job_id, State.UNKNOWN, native_state=native)
    code = st.exit_code
    signal = meta.get("signal")
    if slurm in _ENDS:
        info = f"{_ENDS[str(slurm)]} ({slurm}, job {native_id})"
        return JobStatus(job_id, State.FAILED, native_state=native, info=info, exit_code=code)
    if slurm is None:  # not in the queue any more: what its own files say is all there is
        termed = (work_dir / f"{native_id}.term").exists()
        if code is None:
            return JobStatus(job_id, State.FAILED, native_state="gone", info=(
                f"job {native_id} left the scheduler's queue before lwfm saw how it ended, and "
                "wrote no exit code: it was killed (time limit, memory limit, scancel or a node "
                "failure?); ask the scheduler's accounting (sacct) for its end"))
        if termed:
            return JobStatus(job_id, State.FAILED, native_state="gone", exit_code=code, info=(
                f"job {native_id} was stopped by SIGTERM from the scheduler (time limit, scancel "
                f"or preemption) and exited {code}; it left the queue before lwfm saw which"))
        native = "gone"
    if code == 0 and st.state is JobState.COMPLETED:
        return JobStatus(job_id, State.COMPLETE, native_state=native, exit_code=0,
                         info=f"exit 0 {where} (job {native_id})" if where else None)
    if code is None:
        return JobStatus(job_id, State.FAILED, native_state=native, info=(
            f"the scheduler ended job {native_id} ({native}"
            + (f": {st.message}" if st.message else "") + ") and gave no exit code"))
    how = f"killed by signal {signal}" if signal else f"exit {code}"
    return JobStatus(job_id, State.FAILED, native_state=native, exit_code=code,
                     info=f"{how}{' ' + where if where else ''} (job {native_id})")


def _where(meta: dict) -> str | None:
    """"in partition debug on node1" from what the queue said, if it said."""
    if not meta.get("partition"):
        return None
    return f"in partition {meta['partition']}" + (f" on {meta['nodes']}" if meta.get("nodes") else "")
