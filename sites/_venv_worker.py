"""The venv site's worker: runs INSIDE the site's virtualenv, speaks JSON lines.

Started once per site per host process as ``<venv>/bin/python _venv_worker.py``, so the
driver's own calls (``ping``, ``call``) execute in the venv without a new interpreter per
call. Stdlib only: lwfm itself is not installed in the venv. Requests on stdin are
``{"id", "method", "params"}``; each gets one ``{"id", "result"}`` or ``{"id", "error"}``
line on stdout; a job ending sends ``{"event": "exit", "job", "code", "cancelled"}``.
Nothing received is ever evaluated: python jobs are imported by name with importlib.

``_venv_worker.py --call module:function [args...]`` is the runner for python jobs;
``_venv_worker.py --limits JSON -- argv...`` sets a job's rlimits, then execs it (same
pid: the job's native id and its process group stay what the worker spawned).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import signal
import subprocess
import sys
import threading
import traceback
from typing import Any

EXIT_FILE = "exit_code"          # written atomically next to the job's logs
CANCEL_FILE = "cancelled"        # written by whoever cancels, before the kill


def proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state first), or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode(errors="replace")
    except OSError:
        return None
    return data[data.rfind(")") + 2:].split()


def proc_start_time(pid: int) -> str | None:
    """The process start time in clock ticks (field 22 of /proc/PID/stat); guards against pid reuse."""
    fields = proc_stat(pid)
    return fields[19] if fields and len(fields) > 19 else None


def write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Worker:
    """Request dispatcher plus one waiter thread per running job."""

    def __init__(self, out: Any) -> None:
        self._out = out
        self._out_lock = threading.Lock()
        self._jobs: dict[str, subprocess.Popen] = {}
        self._jobs_lock = threading.Lock()
        self._driver: Any = None
        self._after_send: Any = None
        self._waiters: list[threading.Thread] = []

    # -- plumbing ---------------------------------------------------------
    def send(self, msg: dict[str, Any]) -> None:
        line = json.dumps(msg, default=str) + "\n"
        with self._out_lock:
            try:
                self._out.write(line)
                self._out.flush()
            except (BrokenPipeError, ValueError, OSError):
                pass  # the host went away; jobs still record their exit files

    def handle(self, line: str) -> None:
        try:
            req = json.loads(line)
            rid = req.get("id")
            method = req.get("method")
            params = req.get("params") or {}
        except (ValueError, AttributeError) as e:
            self.send({"id": None, "error": {"type": "ProtocolError", "message": str(e)}})
            return
        fn = getattr(self, f"m_{method}", None) if isinstance(method, str) else None
        if fn is None:
            self.send({"id": rid, "error": {"type": "UnknownMethod", "message": f"no method {method!r}"}})
            return
        try:
            result = fn(**params)
            json.dumps(result)  # refuse to send what is not JSON
            self.send({"id": rid, "result": result})
        except Exception as e:  # reported to the host, which raises SiteError
            self.send({"id": rid, "error": {"type": type(e).__name__, "message": str(e),
                                             "traceback": traceback.format_exc()[-4000:]}})
        finally:
            after, self._after_send = self._after_send, None
            if after is not None:
                after()

    # -- methods ----------------------------------------------------------
    def m_ping(self, distributions: list[str] | None = None) -> dict[str, Any]:
        versions: dict[str, str | None] = {}
        for d in distributions or []:
            try:
                versions[d] = importlib.metadata.version(d)
            except importlib.metadata.PackageNotFoundError:
                versions[d] = None
        return {"version": sys.version, "executable": sys.executable, "prefix": sys.prefix,
                "pid": os.getpid(), "distributions": versions}

    def m_spawn(self, job: str, argv: list[str], job_dir: str, env: dict[str, str] | None = None,
                cwd: str | None = None) -> dict[str, Any]:
        if not argv or not all(isinstance(a, str) for a in argv):
            raise ValueError("argv must be a non-empty list of strings")
        full_env = dict(os.environ)
        full_env.update(env or {})
        with open(os.path.join(job_dir, "stdout"), "ab") as out, \
                open(os.path.join(job_dir, "stderr"), "ab") as err:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    env=full_env, cwd=cwd or None, start_new_session=True)
        with self._jobs_lock:
            self._jobs[job] = proc
        start = proc_start_time(proc.pid)
        # the waiter starts only after the response went out, so the host sees
        # the spawn result before the exit event
        self._after_send = lambda: self._start_waiter(job, proc, job_dir)
        return {"pid": proc.pid, "start": start, "worker": os.getpid()}

    def _start_waiter(self, job: str, proc: subprocess.Popen, job_dir: str) -> None:
        t = threading.Thread(target=self._wait, args=(job, proc, job_dir), daemon=True)
        self._waiters = [w for w in self._waiters if w.is_alive()] + [t]
        t.start()

    def _wait(self, job: str, proc: subprocess.Popen, job_dir: str) -> None:
        code = proc.wait()
        cancelled = os.path.exists(os.path.join(job_dir, CANCEL_FILE))
        try:
            write_atomic(os.path.join(job_dir, EXIT_FILE), f"{code}\n")
        except OSError:
            pass
        with self._jobs_lock:
            self._jobs.pop(job, None)
        self.send({"event": "exit", "job": job, "code": code, "cancelled": cancelled})

    def m_cancel(self, job: str, job_dir: str, grace: float = 3.0) -> bool:
        with self._jobs_lock:
            proc = self._jobs.get(job)
        if proc is None or proc.poll() is not None:
            return False
        write_atomic(os.path.join(job_dir, CANCEL_FILE), "1\n")
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return False
        threading.Thread(target=_escalate, args=(proc, grace), daemon=True).start()
        return True

    def m_call(self, driver_class: str, method: str, args: list[Any] | None = None,
               kwargs: dict[str, Any] | None = None, options: dict[str, Any] | None = None) -> Any:
        if not isinstance(method, str) or method.startswith("_") or not method.isidentifier():
            raise ValueError(f"method {method!r} is not a public method name")
        if self._driver is None:
            cls = resolve(driver_class)
            self._driver = cls(**(options or {}))
        fn = getattr(self._driver, method, None)
        if fn is None or not callable(fn):
            raise AttributeError(f"{driver_class} has no method {method!r}")
        return fn(*(args or []), **(kwargs or {}))

    def wait_jobs(self) -> None:
        """After the host has gone: keep recording exit files until every job ended."""
        for t in list(self._waiters):
            t.join()


def _escalate(proc: subprocess.Popen, grace: float) -> None:
    """SIGKILL the group if SIGTERM was not enough, off the request loop."""
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def resolve(spec: str) -> Any:
    """``package.module:attr.path`` -> the object, by import and attribute lookup only."""
    mod_name, sep, attr = spec.partition(":")
    if not sep or not mod_name or not attr:
        raise ValueError(f"{spec!r} is not 'package.module:name'")
    obj: Any = importlib.import_module(mod_name)
    for part in attr.split("."):
        if not part.isidentifier():
            raise ValueError(f"{spec!r}: {part!r} is not a name")
        obj = getattr(obj, part)
    return obj


def run_call(spec: str, args: list[str]) -> int:
    """Run a python job: import ``module:function`` and call it with string args.

    A non-None return value is printed (as JSON when it can be); exit with
    ``sys.exit`` to choose the code, an exception exits 1 with its traceback.
    """
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like ``python -m``: the job's cwd is importable
    fn = resolve(spec)
    result = fn(*args)
    if result is not None:
        try:
            print(json.dumps(result))
        except (TypeError, ValueError):
            print(result)
    return 0


LIMITS = ("RLIMIT_CPU", "RLIMIT_AS", "RLIMIT_NOFILE")   # what lwfm.site.process_limits names


def exec_limited(limits: str, argv: list[str]) -> int:
    """Set the rlimits ``{"RLIMIT_CPU": 5, ...}`` and exec ``argv``; only returns on
    failure, with the shell's codes (125: cannot set, 127: cannot run). Hard = soft,
    but for CPU one second more, so the job gets SIGXCPU before SIGKILL."""
    import resource
    try:
        for name, value in json.loads(limits).items():
            if name not in LIMITS or not isinstance(value, int) or value <= 0:
                raise ValueError(f"not a limit lwfm sets: {name}={value!r}")
            hard = value + 1 if name == "RLIMIT_CPU" else value
            resource.setrlimit(getattr(resource, name), (value, hard))
    except (ValueError, OSError) as e:
        print(f"lwfm: cannot set the job's resource limits: {e}", file=sys.stderr)
        return 125
    try:
        os.execvp(argv[0], argv)
    except OSError as e:
        print(f"lwfm: cannot run {argv[0]}: {e}", file=sys.stderr)
    return 127


def main(argv: list[str]) -> int:
    if len(argv) >= 4 and argv[0] == "--limits" and argv[2] == "--":
        return exec_limited(argv[1], argv[3:])
    if len(argv) >= 2 and argv[0] == "--call":
        sys.path[:] = [p for p in sys.path if p != os.path.dirname(os.path.abspath(__file__))]
        return run_call(argv[1], argv[2:])
    # protocol on a private copy of stdout; stray prints from user code go to stderr
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    w = Worker(out)
    for line in sys.stdin:
        if line.strip():
            w.handle(line)
    w.wait_jobs()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
