"""psij's Slurm executor, with what lwfm needs changed and nothing else.

Why a subclass and not psij's ``SlurmJobExecutor`` as it is:

- its batch script runs the job under psij's launcher (a second bash that sources a
  library, a process substitution that timestamps each log line with ``date``) and
  builds a node file with two ``scontrol`` calls: on a loaded node that wrapper costs
  seconds per job. lwfm's script (``_psij_slurm.mustache``) runs the command directly
  (or under ``srun`` for a multi-process job), sends its output to the paths ``lwfm
  log`` reads, and writes its exit code where psij's ``attach`` looks for it;
- its queue query lists every job of the user (``--me -t all``) and asserts that each
  failure reason is one it knows, so one ``OutOfMemory`` fails every job it polls. Ours
  asks about lwfm's jobs only, still one ``squeue`` per poll, and keeps Slurm's own state
  name, reason and exit status in the status's metadata for lwfm's record;
- psij writes the job's environment into the batch script as ``export`` lines: a secret
  in a job's env would sit in a file. lwfm hands it to ``sbatch`` in its own environment
  instead (``--export=ALL`` passes it on to the job), so no value is written to disk;
- psij leaves ``duration`` at 10 minutes when unset; lwfm leaves it to the partition.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
from pathlib import Path
from typing import Any, Collection, Dict, List

from psij import Job, JobState, JobStatus
from psij.executors.batch.batch_scheduler_executor import UNKNOWN_ERROR, check_status_exit_code
from psij.executors.batch.script_generator import TemplatedScriptGenerator
from psij.executors.batch.slurm import SlurmExecutorConfig, SlurmJobExecutor

#: Slurm's long state names (squeue %T) -> psij states. A state not listed is taken as
#: still going (ACTIVE) rather than guessed to be an end.
SLURM_STATES: dict[str, JobState] = {
    "PENDING": JobState.QUEUED, "CONFIGURING": JobState.QUEUED, "REQUEUED": JobState.QUEUED,
    "REQUEUE_HOLD": JobState.QUEUED, "REQUEUE_FED": JobState.QUEUED, "RESV_DEL_HOLD": JobState.QUEUED,
    "RUNNING": JobState.ACTIVE, "COMPLETING": JobState.ACTIVE, "SUSPENDED": JobState.ACTIVE,
    "STOPPED": JobState.ACTIVE, "SIGNALING": JobState.ACTIVE, "STAGE_OUT": JobState.ACTIVE,
    "RESIZING": JobState.ACTIVE,
    "COMPLETED": JobState.COMPLETED, "CANCELLED": JobState.CANCELED,
    "FAILED": JobState.FAILED, "TIMEOUT": JobState.FAILED, "OUT_OF_MEMORY": JobState.FAILED,
    "NODE_FAIL": JobState.FAILED, "BOOT_FAIL": JobState.FAILED, "DEADLINE": JobState.FAILED,
    "PREEMPTED": JobState.FAILED, "SPECIAL_EXIT": JobState.FAILED, "REVOKED": JobState.FAILED,
}

log = logging.getLogger("lwfm.psij")
_QUERY = "JobID:40,State:24,Reason:60,exit_code:12,Partition:40,NodeList:200"  # never-empty first


class LwfmSlurmExecutor(SlurmJobExecutor):
    """psij's Slurm executor with lwfm's batch script and a robust, narrow queue query."""

    _NAME_ = "slurm"

    def __init__(self, url: str | None = None, config: SlurmExecutorConfig | None = None):
        self.queries = 0             # squeue calls so far (the benchmark reads it)
        self.polls = 0               # polls of the queue thread that asked about jobs
        self.widest = 0              # the most jobs one query asked about
        self._asked: list[str] = []  # the jobs the last query asked about
        self._count_lock = threading.Lock()
        self._submitting = threading.local()  # the job env of the submit on this thread
        super().__init__(url=url, config=config)
        self.generator = TemplatedScriptGenerator(self.config, Path(__file__).with_name(
            "_psij_slurm.mustache"))

    # -- the batch script -------------------------------------------------------------
    def _create_script_context(self, job: Job) -> Dict[str, object]:
        ctx = super()._create_script_context(job)
        spec = job.spec
        assert spec is not None and spec.executable is not None
        if not spec.launcher:  # a configured psij launcher (srun, mpirun) keeps psij's wrapper
            argv = [spec.executable, *(spec.arguments or [])]
            res = spec.resources
            many = res is not None and (getattr(res, "computed_process_count", 1) or 1) > 1
            ctx["psij"] = {**ctx["psij"],  # type: ignore[dict-item]
                           "launch_command": (["srun"] if many else []) + argv}
        ctx["lwfm"] = {"stdin": spec.stdin_path or "/dev/null",  # Slurm expands %j: not ours
                       "stdout": str(spec.stdout_path or "/dev/null").replace("%", "%%"),
                       "stderr": str(spec.stderr_path or "/dev/null").replace("%", "%%")}
        if spec.attributes is None or spec.attributes.duration is None:
            ctx.pop("formatted_job_duration", None)
        return ctx

    def _get_launcher_from_job(self, job: Job) -> Any:
        """Without a configured launcher the command is built above and psij's launcher
        scripts are not deployed."""
        if job.spec is not None and job.spec.launcher:
            return super()._get_launcher_from_job(job)
        return _NoLauncher()

    # -- the queue query --------------------------------------------------------------
    def get_status_command(self, native_ids: Collection[str]) -> List[str]:
        self.widest = max(self.widest, len(native_ids))
        self._asked = list(native_ids)
        return ["squeue", "-h", "-t", "all", "-j", ",".join(native_ids), "-O", _QUERY]

    def submit(self, job: Job) -> None:
        assert job.spec is not None
        self._submitting.env = {k: str(v) for k, v in (job.spec.environment or {}).items()}
        try:
            super().submit(job)
        finally:
            self._submitting.env = None

    def _run_command(self, cmd: List[str]) -> str:
        if cmd and cmd[0] == "squeue":
            with self._count_lock:
                self.queries += 1
        env = getattr(self._submitting, "env", None)
        if not (cmd and cmd[0] == "sbatch" and env is not None):
            return super()._run_command(cmd)
        res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env})
        if res.returncode != 0:
            raise subprocess.CalledProcessError(res.returncode, cmd, output="\n".join(
                p for p in (res.stdout, res.stderr) if p) or UNKNOWN_ERROR)
        return res.stdout

    def parse_status_output(self, exit_code: int, out: str) -> Dict[str, JobStatus]:
        if exit_code != 0 and "Invalid job id" in out:
            return {}  # every job asked about has left the queue: each is read from its files
        if exit_code != 0:
            # psij would fail every job after two failed polls (a slurmctld restart, a
            # busy controller): their states are kept instead, until squeue answers.
            log.warning("squeue failed (exit %s): %s; job states stay as they were until "
                        "the scheduler answers", exit_code, out.strip()[-300:])
            return {nid: JobStatus(JobState.QUEUED) for nid in self._asked}
        check_status_exit_code("squeue", exit_code, out)
        with self._count_lock:
            self.polls += 1
        return parse_squeue(out)

    def query(self, native_ids: Collection[str]) -> Dict[str, JobStatus]:
        """One ``squeue`` for ``native_ids`` now (for a process that tracks none of them)."""
        cmd = self.get_status_command(native_ids)
        try:
            return self.parse_status_output(0, self._run_command(cmd))
        except subprocess.CalledProcessError as e:
            return self.parse_status_output(e.returncode, e.output)

    def _set_job_status(self, job: Job, status: JobStatus) -> None:
        """psij drops a status whose state is not past the job's; a queued job's new
        reason (Priority, then Resources) is passed on to the callback all the same."""
        if status.state is JobState.QUEUED and job.status.state is JobState.QUEUED:
            old = (job.status.metadata or {}).get("reason")
            new = (status.metadata or {}).get("reason")
            if new and new != old:
                job.status.metadata = {**(job.status.metadata or {}), "reason": new}
                self._notify_callback(job, status)
            return
        super()._set_job_status(job, status)

    def _read_aux_files(self, job: Job, status: JobStatus) -> None:
        """psij reads the exit code file; Slurm's own exit status, when squeue still had
        it, is the one recorded (a job killed by a signal wrote no file)."""
        known = status.exit_code
        super()._read_aux_files(job, status)
        if known is not None:
            status.exit_code = known
            if known != 0 and status.state is JobState.COMPLETED:
                status.state = JobState.FAILED


def parse_squeue(out: str) -> Dict[str, JobStatus]:
    """``squeue -O JobID,State,Reason,exit_code,Partition,NodeList`` lines -> psij statuses,
    with Slurm's state, reason, exit status, partition and nodes kept in ``metadata``."""
    r: Dict[str, JobStatus] = {}
    for line in out.splitlines():
        cols = line.split()
        if len(cols) < 2:
            continue
        native_id, slurm_state = cols[0], cols[1].rstrip("+")
        reason = cols[2] if len(cols) > 2 and cols[2] not in ("None", "(null)") else None
        state = SLURM_STATES.get(slurm_state, JobState.ACTIVE)
        code: int | None = None
        signal: int | None = None
        if state.final and len(cols) > 3 and cols[3].isdigit():
            raw = int(cols[3])
            code, signal = raw >> 8, raw & 0x7F
        meta: dict[str, object] = {"slurm_state": slurm_state, "reason": reason, "signal": signal,
                                   "partition": cols[4] if len(cols) > 4 else None,
                                   "nodes": cols[5] if len(cols) > 5 else None}
        exit_code = code if not signal else 128 + signal
        r[native_id] = JobStatus(state, message=reason, exit_code=exit_code if state.final else None,
                                 metadata=meta)
    return r


class _NoLauncher:
    """Stands in for a psij launcher where the executor builds the command itself."""

    def get_launch_command(self, job: Job, log_file: str | None = None) -> List[str]:
        spec = job.spec
        assert spec is not None and spec.executable is not None
        return [spec.executable, *(spec.arguments or [])]

    def is_launcher_failure(self, output: str) -> bool:
        return False

    def get_launcher_failure_message(self, output: str) -> str:
        return ""
