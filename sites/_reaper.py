"""The local site's reaper thread: the submitting process's end of its children."""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from typing import Any

from ._keeper import exit_info

log = logging.getLogger("lwfm.local")

_LINGER_S = 0.001


class Reaper(threading.Thread):
    """Waits on a pidfd per child and reports each exit as it happens. It survives any
    error (a reaper that died would leave its jobs RUNNING for ever); a child someone
    else reaped is handed to polling, which reads its exit file.

    Registering a pidfd with epoll from the submitting thread needs no wake-up of this
    thread (epoll_ctl is thread-safe), so submitting costs no thread switch."""

    def __init__(self, run: Any):
        super().__init__(name="lwfm-local-reaper", daemon=True)
        self.run_ = run
        self.ep = select.epoll()
        self.jobs: dict[int, tuple[int, str]] = {}   # pidfd -> (pid, job id)
        self.wake_r, self.wake_w = os.pipe()
        self.ep.register(self.wake_r, select.EPOLLIN)
        self.stopping = False

    def watch(self, fd: int, pid: int, job_id: str) -> None:
        self.jobs[fd] = (pid, job_id)
        self.ep.register(fd, select.EPOLLIN)

    def stop(self) -> None:
        """End once no job is left (at once if none is): a child must be reaped by its
        parent, so jobs still running at close keep this thread until they end."""
        self.stopping = True
        os.write(self.wake_w, b"x")

    def run(self) -> None:
        try:
            while not (self.stopping and not self.jobs):
                ready = self.ep.poll()
                time.sleep(_LINGER_S)  # gather exits: one wake-up per burst, not one per job
                ready += self.ep.poll(0)
                for fd in dict.fromkeys(fd for fd, _ in ready):
                    if fd in self.jobs:
                        self._reap(fd)
                    elif fd == self.wake_r:
                        os.read(self.wake_r, 64)
        finally:
            self.ep.close()
            os.close(self.wake_r)
            os.close(self.wake_w)

    def _reap(self, fd: int) -> None:
        pid, job_id = self.jobs.pop(fd)
        try:
            self.ep.unregister(fd)
            try:
                status: int | None = os.waitpid(pid, 0)[1]
            except ChildProcessError:  # reaped behind our back: the kernel may have kept
                status = exit_info(fd)  # its status (6.15+), else its exit file tells
            finally:
                os.close(fd)
            code = None if status is None else os.waitstatus_to_exitcode(status)
            self.run_._finished(job_id, code)
        except Exception:  # noqa: BLE001 - one bad report must not end the others
            log.exception("the end of a local job could not be reported")
