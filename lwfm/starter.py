"""Starting fired jobs: off the writer thread, once, and across crashes.

A trigger fires in ONE transaction that also records its job (PENDING, "not started
yet") and this process's claim on starting it (``Store.fire_trigger``). The starter
then starts it on a worker thread of its own, so site I/O (an SSH connect, a venv
build) never runs on the recorder's writer thread. Just before asking the site it
marks the start "starting"; right after, the job's first status is written (and
waited for), so the window in which a crash leaves the outcome unknown is one spawn.

A process that dies (kill -9) leaves its claims behind. :meth:`Starter.recover`, run by
the manager loop when it starts and every few seconds, takes over the claims of dead
processes with a compare-and-swap, so two processes never both start a job:

* "waiting" (the site was never asked): it is started here;
* "starting", and the job has a native id or moved on: it started, the claim closes;
* "starting" and nothing recorded: the process died while its site started the job,
  which may or may not run. lwfm does not start it twice (a trigger fires once): it is
  recorded FAILED, saying so, and its log tells whether it ran.

A job submitted directly (``Manager.submit``) carries its submitter's claim on its row
(``jobs.launcher``, written with it): still PENDING with no native id once that claim is
dead, it is recorded FAILED the same way, instead of staying PENDING for ever.

A claim names its process: host, pid, the pid's start time, and a nonce per starter
(a closed Manager's claims are dead while its process lives on). A claim made on
another host cannot be checked from here and is never taken over.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import deque
from pathlib import Path
from typing import Callable

from .errors import LwfmError, NotFound
from .model import Job, JobStatus, State, new_id
from .store import Store

log = logging.getLogger("lwfm.starter")
_CLOSE_BUDGET_S = 10.0   # close starts what is queued for this long; the rest is released
_HOST = socket.gethostname()
_LIVE: set[str] = set()  # claims of this process's open starters


def _start_ticks(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def new_claim() -> str:
    return f"{_HOST}:{os.getpid()}:{_start_ticks(os.getpid())}:{new_id()[:8]}"


def hold_claim() -> str:
    """A claim on work this process does outside a starter (a publication being written),
    alive until :func:`release_claim` or the process's end."""
    claim = new_claim()
    _LIVE.add(claim)
    return claim


def release_claim(claim: str) -> None:
    _LIVE.discard(claim)


def claim_alive(claim: str) -> bool:
    """Whether the process (and starter) that made ``claim`` may still start its job."""
    host, pid, ticks, _ = (claim.rsplit(":", 3) + ["", "", ""])[:4]
    if host != _HOST or not pid.isdigit():
        return True  # another machine's process: we cannot tell, so we never steal
    if int(pid) == os.getpid():
        return claim in _LIVE
    return _start_ticks(int(pid)) == ticks


class Starter:
    """Starts the jobs this process's triggers fired, on the ``lwfm-starter`` thread."""

    def __init__(self, store: Store, launch: Callable[[Job], object],
                 record: Callable[[JobStatus], None]):
        self.store = store
        self._launch = launch      # start a recorded job on its site, record how it went
        self._record = record      # write a status and wait until it is written
        self.claim = new_claim()
        _LIVE.add(self.claim)
        self._q: deque[tuple[str, str]] = deque()
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._deadline = 0.0

    def start(self, trigger_id: str, job_id: str) -> None:
        """Start a fired job we hold the claim of, soon, on the worker thread."""
        with self._cv:
            if not self._closing:
                self._q.append((trigger_id, job_id))
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="lwfm-starter",
                                                    daemon=True)
                    self._thread.start()
                self._cv.notify()
                return
        self._release(trigger_id)  # fired while we close: the next process starts it

    def _run(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._q or self._closing)
                if not self._q or (self._closing and time.monotonic() > self._deadline):
                    return
                trigger_id, job_id = self._q.popleft()
            try:
                self._start_one(trigger_id, job_id)
            except Exception:  # the worker outlives one bad start; the claim is recovered
                log.exception("could not start job %s fired by trigger %s", job_id, trigger_id)

    def _start_one(self, trigger_id: str, job_id: str) -> None:
        if not self.store.begin_launch(trigger_id, self.claim):
            return  # cancelled before it started, or another process took the claim over
        try:
            self._launch(self.store.get_job(job_id))
        except LwfmError as e:  # recorded FAILED by the launch: waiters see it end
            log.warning("trigger %s fired but its job %s could not start: %s",
                        trigger_id, job_id, e)
        self.store.end_launch(trigger_id)

    def recover(self) -> int:
        """Take over the starts that dead processes left; returns how many were found."""
        found = 0
        for trigger_id, job_id, phase, claim, state, native_id in self.store.unstarted():
            if claim is not None and claim_alive(claim):
                continue
            if not self.store.take_launch(trigger_id, claim, self.claim):
                continue  # another process took it first
            found += 1
            if state is None:
                log.error("trigger %s fired but its job %s is not recorded", trigger_id, job_id)
                self.store.end_launch(trigger_id)
            elif state == State.PENDING.value and phase == "waiting":
                log.info("starting job %s, fired by trigger %s before its process stopped",
                         job_id, trigger_id)
                self.start(trigger_id, job_id)
            elif native_id is not None or state != State.PENDING.value:
                self.store.end_launch(trigger_id)  # it started (or ended) before the crash
            else:
                self._record(JobStatus(job_id, State.FAILED, info=(
                    "the lwfm process starting it (trigger " + trigger_id + ") stopped while "
                    "its site started it: it may have run, and it is not started twice "
                    "(its log tells; resubmit it if it did not run)")))
                self.store.end_launch(trigger_id)
        for job_id, claim in self.store.submitted_unstarted():
            found += self.settle_submitted(job_id, claim)
        return found

    def settle_submitted(self, job_id: str, claim: str) -> bool:
        """End a submitted job whose submitter stopped after recording it and before its
        start was recorded (killed while its site started it): it may have run, so it is
        recorded FAILED, not started again. True if this process ended it."""
        if claim_alive(claim) or not self.store.take_job_launch(job_id, claim, self.claim):
            return False
        self._record(JobStatus(job_id, State.FAILED, info=(
            f"the process that submitted it ({claim.rsplit(':', 1)[0]}) stopped before its "
            "start was recorded: it may have run (its log tells), and it is not started "
            "twice (resubmit it if it did not run)")))
        return True

    def _release(self, trigger_id: str) -> None:
        try:
            self.store.take_launch(trigger_id, self.claim, None)
        except LwfmError as e:  # the claim dies with this starter anyway: recovered later
            log.warning("could not release the start of trigger %s: %s", trigger_id, e)

    def close(self, budget: float = _CLOSE_BUDGET_S) -> None:
        """Start what is queued for up to ``budget`` s, release the rest, stop the thread."""
        with self._cv:
            self._closing = True
            self._deadline = time.monotonic() + budget
            self._cv.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(budget + 30)  # (a start in progress may take a while to return)
            if thread.is_alive():
                log.error("a job start did not return within %.0f s; its claim is recovered "
                          "once this process ends", budget + 30)
        with self._cv:
            left, self._q = list(self._q), deque()
        for trigger_id, _ in left:
            self._release(trigger_id)
        _LIVE.discard(self.claim)

    def note(self, job_id: str) -> str | None:
        """What to tell about a job fired but not started yet (None if it is not one)."""
        try:
            got = self.store.launch_of(job_id)
        except NotFound:
            return None
        if got is None:
            return None
        trigger_id, phase, claim = got
        who = ("no process holds it: the next manager loop (lwfm serve, or a waiting "
               "script) starts it" if claim is None else f"claimed by process {claim}")
        what = "being started now" if phase == "starting" else "not started yet"
        return f"fired by trigger {trigger_id}, {what} ({who})"
