"""The local site's keeper: the process that starts local jobs and learns how they end.

A process's exit code goes to its parent only. Were the submitting process the parent, a
job that outlives it (the script left its ``with Manager()`` block, was killed -9, or is
``lwfm run``) would end unrecorded. So a LocalRun starts one keeper on its first submit: a
small stdlib-only interpreter (``python -I -S``), in its own process group and re-parented
away from the submitter (it forks once and the first process exits). The keeper spawns
each job (:mod:`._spawn`), waits on a pidfd per job, writes the exit code to the job's
``<id>.exit`` file beside its log, for any later process, and reports it to its
Manager while that lives. When the Manager goes (close, exit, kill -9: its end of the
sockets closes), the keeper goes on until its last job has ended, then exits.

This costs one round trip over a Unix socket per submit and one small file per job, in the
keeper, off the submitter's core; a ``/bin/sh`` wrapper per job (an exec and a fork
more, in every job) cost 40% of the local site's throughput.

Wire: one JSON object per line. Bytes (argv, environment, paths) travel as latin-1 text,
so every byte arrives exactly, whatever either side's locale. On ``req``, the Manager sends
``{"env": {...}}`` (the base environment for later jobs, when it changed) and
``{"job": id, "path", "argv", "env", "log", "exit", "cwd"}`` (answered ``{"pid": n}`` or
``{"errno": n, "error": text}``); on ``ev`` the keeper sends ``{"job": id, "code": n}``.
"""

from __future__ import annotations

import json
import logging
import os
import select
import socket
import sys
import threading
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("lwfm.local")
_READY_TIMEOUT_S = 60.0  # a fresh interpreter on a loaded machine


def _b(s: str) -> bytes:
    return s.encode("latin-1")


def _s(b: bytes) -> str:
    return b.decode("latin-1")


def _line(msg: dict[str, Any]) -> bytes:
    return json.dumps(msg, separators=(",", ":")).encode() + b"\n"


# -- the keeper process ----------------------------------------------------------------------

class _Keeper:
    def __init__(self, req: socket.socket, ev: socket.socket, spawn: Callable[..., int]):
        self.req: socket.socket | None = req
        self.ev: socket.socket | None = ev
        self.spawn = spawn
        self.ep = select.epoll()
        self.ep.register(req.fileno(), select.EPOLLIN)
        self.jobs: dict[int, tuple[int, str, bytes]] = {}   # pidfd -> (pid, job id, exit file)
        self.env: dict[bytes, bytes] = {}
        self.buf = b""

    def run(self) -> None:
        self._send_req({"ready": os.getpid()})
        while self.req is not None or self.jobs:
            ready = [fd for fd, _ in self.ep.poll()]
            if self.req is not None and self.req.fileno() in ready:
                self._read_requests()  # first: a submitter waits for the answer
            ended = [self._reap(fd) for fd in ready if fd in self.jobs]
            if ended:  # all the exits of one wake-up in one message
                self._send_ev(b"".join(ended))

    def _read_requests(self) -> None:
        assert self.req is not None
        try:
            data = self.req.recv(1 << 20)
        except OSError:
            data = b""
        if not data:  # the Manager closed or died: no more jobs; finish those running
            self.ep.unregister(self.req.fileno())
            self.req.close()
            self.req = None
            return
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        for line in lines:
            msg = json.loads(line)
            if "env" in msg and "job" not in msg:
                self.env = {_b(k): _b(v) for k, v in msg["env"].items()}
            else:
                self._send_req(self._start(msg))

    def _start(self, msg: dict[str, Any]) -> dict[str, Any]:
        env = {**self.env, **{_b(k): _b(v) for k, v in msg["env"].items()}}
        try:
            pid = self.spawn(_b(msg["path"]), [_b(a) for a in msg["argv"]], env, _b(msg["log"]),
                             None if msg["cwd"] is None else _b(msg["cwd"]))
        except OSError as e:
            return {"job": msg["job"], "errno": e.errno or 0, "error": e.strerror or str(e)}
        fd = os.pidfd_open(pid)  # now: the pid cannot be reused before it is waited for
        self.jobs[fd] = (pid, msg["job"], _b(msg["exit"]))
        self.ep.register(fd, select.EPOLLIN)
        return {"job": msg["job"], "pid": pid}

    def _reap(self, fd: int) -> bytes:
        pid, job, exit_file = self.jobs.pop(fd)
        self.ep.unregister(fd)
        os.close(fd)
        try:
            code: int | None = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        except ChildProcessError:  # not ours to wait for after all: say so, guess nothing
            code = None
        if code is not None:
            try:
                out = os.open(exit_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                try:
                    os.write(out, b"%d\n" % code)
                finally:
                    os.close(out)
            except OSError as e:  # the event below still tells a living Manager
                print(f"lwfm keeper: cannot write {os.fsdecode(exit_file)}: {e}", file=sys.stderr)
        return _line({"job": job, "code": code})

    def _send_req(self, msg: dict[str, Any]) -> None:
        if self.req is not None:
            try:
                self.req.sendall(_line(msg))
            except OSError:
                pass  # the Manager is gone; the read side notices

    def _send_ev(self, data: bytes) -> None:
        if self.ev is not None:
            try:
                self.ev.sendall(data)
            except OSError:  # the Manager is gone: the exit files speak for it
                self.ev.close()
                self.ev = None


def _load_spawn() -> Callable[..., int]:
    """:func:`._spawn.spawn`, loaded by path: under ``-I -S`` lwfm itself may not import."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("_lwfm_spawn", Path(__file__).with_name("_spawn.py"))
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod.spawn


def main(argv: list[str]) -> int:
    req_fd, ev_fd = int(argv[0]), int(argv[1])
    if os.fork():
        os._exit(0)  # the submitter waits for this one; the keeper is nobody's zombie there
    os.chdir("/")    # hold no directory busy (each job gets its own cwd)
    req, ev = socket.socket(fileno=req_fd), socket.socket(fileno=ev_fd)
    for s in (req, ev):
        s.set_inheritable(False)
    _Keeper(req, ev, _load_spawn()).run()
    return 0


# -- the Manager's end -----------------------------------------------------------------------

class KeeperClient:
    """One keeper process, seen from the LocalRun that started it.

    ``on_exit(job_id, code)`` runs on the reader thread (``lwfm-local-reaper``) for each
    job that ends, ``code`` None if the keeper could not learn it; ``on_gone(client)``
    once, when the keeper's events stop (it died, or :meth:`close`)."""

    def __init__(self, label: str, log: str, on_exit: Callable[[str, int | None], None],
                 on_gone: Callable[["KeeperClient"], None]):
        self.req, req_child = socket.socketpair()
        self.ev, ev_child = socket.socketpair()
        self._lock = threading.Lock()
        self._sent_env: dict[bytes, bytes] | None = None
        self._on_exit, self._on_gone = on_exit, on_gone
        self.closing = False
        try:
            for s in (req_child, ev_child):
                s.set_inheritable(True)
            pid = os.posix_spawn(sys.executable, [
                sys.executable, "-I", "-S", __file__, str(req_child.fileno()),
                str(ev_child.fileno()), label], os.environ, setpgroup=0, file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
                (os.POSIX_SPAWN_DUP2, 1, 2)])
        except OSError:
            self._close_sockets()
            raise
        finally:
            req_child.close()
            ev_child.close()
        try:
            os.waitpid(pid, 0)  # the first process exits at once; its child is the keeper
        except ChildProcessError:
            pass  # someone else in this process reaped it: no matter
        self._replies = self.req.makefile("rb")
        self.req.settimeout(_READY_TIMEOUT_S)
        try:
            ready = self._replies.readline()
        except OSError:
            ready = b""
        if not ready:
            self._close_sockets()
            raise OSError(f"the local job keeper did not start (see {log})")
        self.req.settimeout(None)
        self.pid: int = json.loads(ready)["ready"]
        self.reader = threading.Thread(target=self._read_events, name="lwfm-local-reaper",
                                       daemon=True)
        self.reader.start()

    def spawn(self, job_id: str, path: bytes, argv: list[bytes], env: dict[bytes, bytes],
              extra: dict[bytes, bytes], log: str, exit_file: str, cwd: bytes | None) -> int:
        """Start one job (``env`` the base environment, ``extra`` its own variables, which
        win); its pid. OSError as from posix_spawn; BrokenPipeError if the keeper is gone
        before it read the request (so it started nothing)."""
        job = {"job": job_id, "path": _s(path), "argv": [_s(a) for a in argv],
               "env": {_s(k): _s(v) for k, v in extra.items()}, "log": log, "exit": exit_file,
               "cwd": None if cwd is None else _s(cwd)}
        with self._lock:
            data = _line(job)
            if env != self._sent_env:
                data = _line({"env": {_s(k): _s(v) for k, v in env.items()}}) + data
            try:
                self.req.sendall(data)
            except OSError as e:
                raise BrokenPipeError(e.errno, "the local job keeper is gone") from None
            self._sent_env = env
            reply = self._replies.readline()
        if not reply:
            raise OSError(0, "the local job keeper ended while starting the job")
        msg = json.loads(reply)
        if "pid" not in msg:
            raise OSError(msg["errno"], msg["error"])
        return int(msg["pid"])

    def _read_events(self) -> None:
        """Every error is caught: a reader that died would leave its jobs RUNNING for ever."""
        try:
            with self.ev.makefile("rb") as events:
                for line in events:
                    try:
                        msg = json.loads(line)
                        self._on_exit(msg["job"], msg["code"])
                    except Exception:  # noqa: BLE001 - one bad report must not end the rest
                        log.exception("a local job's end could not be reported: %r", line)
        except Exception:  # noqa: BLE001 - the socket broke: the same as the keeper ending
            log.exception("lost the local job keeper's reports")
        finally:
            self._on_gone(self)

    def close(self) -> None:
        """Stop talking to the keeper (it finishes its jobs, writing their exit files, then
        exits) and join the reader thread."""
        self.closing = True
        for s in (self.req, self.ev):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self.reader is not threading.current_thread():
            self.reader.join()
        self._close_sockets()

    def _close_sockets(self) -> None:
        replies = getattr(self, "_replies", None)
        if replies is not None:
            replies.close()
        self.req.close()
        self.ev.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
