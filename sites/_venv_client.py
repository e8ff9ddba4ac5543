"""Host side of the venv worker: one long-lived interpreter, JSON lines both ways.

Why a worker: the site's own calls must run inside the venv (where lwfm is not
installed), and starting an interpreter per call would cost ~20-50 ms each. Requests
are matched to responses by id; unsolicited ``event`` lines go to a callback on the
reader thread, which is what makes job completion event-driven.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import queue
import subprocess
import threading
from pathlib import Path
from typing import Any, Callable

from lwfm.errors import SiteError

log = logging.getLogger(__name__)

WORKER_SCRIPT = Path(__file__).with_name("_venv_worker.py")


class _Pending:
    __slots__ = ("done", "msg", "proc")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.msg: dict[str, Any] | None = None
        self.proc: subprocess.Popen | None = None   # the worker asked


class WorkerClient:
    """A started-on-demand worker process; restarted on next use if it died."""

    def __init__(self, python: Path, env: dict[str, str], stderr_path: Path,
                 on_event: Callable[[dict[str, Any]], None], site: str = "") -> None:
        self._python = python
        self._env = env
        self._stderr_path = stderr_path
        self._on_event = on_event
        self._site = site
        self._proc: subprocess.Popen | None = None
        self._ids = itertools.count(1)
        self._events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._dispatch, daemon=True, name=f"lwfm-venv-events-{site}").start()
        self._pending: dict[int, _Pending] = {}
        self._lock = threading.Lock()          # guards start and _pending
        self._wlock = threading.Lock()         # one request line at a time

    @property
    def pid(self) -> int | None:
        p = self._proc
        return p.pid if p is not None and p.poll() is None else None

    def _ensure(self) -> subprocess.Popen:
        p = self._proc
        if p is not None and p.poll() is None:
            return p
        with open(self._stderr_path, "ab") as err:
            # own session: a Ctrl-C at the host does not kill the worker, which
            # then outlives the host just long enough to record its jobs' exits
            p = subprocess.Popen([str(self._python), str(WORKER_SCRIPT)], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=err, env=self._env,
                                 start_new_session=True, close_fds=True)
        self._proc = p
        threading.Thread(target=self._read, args=(p,), daemon=True,
                         name=f"lwfm-venv-{self._site}").start()
        return p

    def request(self, method: str, params: dict[str, Any] | None = None,
                timeout: float | None = 120) -> Any:
        pend = _Pending()
        with self._lock:
            proc = pend.proc = self._ensure()
            rid = next(self._ids)
            self._pending[rid] = pend
        line = json.dumps({"id": rid, "method": method, "params": params or {}}) + "\n"
        try:
            with self._wlock:   # apart from _lock: the reader never waits on a full stdin pipe
                assert proc.stdin is not None
                proc.stdin.write(line.encode())
                proc.stdin.flush()
        except (OSError, ValueError) as e:
            with self._lock:
                self._pending.pop(rid, None)
            raise SiteError(f"venv site {self._site!r}: worker is gone ({e}); "
                            f"see {self._stderr_path}") from None
        if not pend.done.wait(timeout):
            with self._lock:
                self._pending.pop(rid, None)
            raise SiteError(f"venv site {self._site!r}: no answer to {method!r} in {timeout}s")
        msg = pend.msg or {}
        if "error" in msg:
            err = msg["error"] or {}
            raise SiteError(f"venv site {self._site!r}: {method} failed in the venv: "
                            f"{err.get('type')}: {err.get('message')}"
                            + (f"\n{err['traceback']}" if err.get("traceback") else ""))
        return msg.get("result")

    def _read(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            try:
                msg = json.loads(raw)
            except ValueError:
                log.warning("venv worker %s: not JSON: %r", self._site, raw[:200])
                continue
            if "event" in msg:
                self._events.put(msg)
                continue
            with self._lock:
                pend = self._pending.pop(msg.get("id"), None)  # type: ignore[arg-type]
            if pend is not None:
                pend.msg = msg
                pend.done.set()
        proc.wait()
        with self._lock:                      # worker died: fail whoever waits on it
            dead = [r for r, pd in self._pending.items() if pd.proc is proc]
            dead_pends = [self._pending.pop(r) for r in dead]
        for pend in dead_pends:
            pend.msg = {"error": {"type": "WorkerExited",
                                  "message": f"worker exited with {proc.returncode}; "
                                             f"see {self._stderr_path}"}}
            pend.done.set()

    def _dispatch(self) -> None:
        """Events run off the reader thread: a handler may itself call the worker
        (a trigger submitting the next job to this site) and needs the reader free."""
        while True:
            msg = self._events.get()
            if msg is None:     # closed
                return
            try:
                self._on_event(msg)
            except Exception:  # a broken callback must not stop later completion events
                log.exception("venv site %s: event handler failed", self._site)

    def close(self, timeout: float = 2.0) -> None:
        """Close the worker's stdin; it exits once its running jobs have ended."""
        self._events.put(None)
        p = self._proc
        if p is None:
            return
        try:
            if p.stdin:
                p.stdin.close()
        except OSError:
            pass
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            pass  # still waiting for jobs to end; it records their exits itself


def worker_env(venv: Path) -> dict[str, str]:
    """The host's environment, activated for ``venv`` (what ``bin/activate`` does)."""
    env = dict(os.environ)
    env.pop("PYTHONHOME", None)
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    return env
