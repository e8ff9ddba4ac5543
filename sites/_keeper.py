"""The local site's keeper: a small process that learns how each local job ended even if
the process that started it is gone.

A process's exit code goes to its parent. The submitting process spawns each job itself
(the fast path) and, while it lives, reaps and reports it. If it goes first (it left its
``with Manager()`` block and exited, or was killed -9), the job is re-parented and its code
would be lost. So the submitter hands a pidfd of every job to its keeper (SCM_RIGHTS, no
reply awaited): a stdlib-only interpreter (``python -I -S``) in its own process group,
re-parented away from the submitter (it forks once and the first process exits). When a
job has been reaped, by whoever, the kernel keeps its exit status on the pidfd
(``PIDFD_GET_INFO`` with ``PIDFD_INFO_EXIT``, Linux 6.15+): the keeper writes it to the
job's ``<id>.exit`` file, which any later process reads, once the Manager has gone (while
it lives, it records each end itself). Once its Manager has gone and its last job has been
reaped, the keeper exits.

Older kernels keep no exit status for a non-parent: there the local site runs each job
under a ``/bin/sh`` that writes the exit file itself (an exec and a fork more per job).
A helper process that spawned the jobs itself (one round trip per submit) cost half the
local site's throughput on a loaded machine, as did the shell: this costs one ``sendmsg``.

The hand-off is batched: the Manager sends the pidfds of the jobs started in the last
:data:`_LINGER_S` (at most :data:`_BATCH` at once) in one message, so a burst of submits
costs one ``sendmsg`` and one keeper wake-up per batch, not per job. The price is a window:
a submitter killed -9 within :data:`_LINGER_S` of a submit leaves that job's end to the
grace rule (recorded FAILED, "exit code not recorded"). ``close`` sends what is pending.

Wire: a SOCK_SEQPACKET pair; each message is ``{"exit": [path, ...]}`` as JSON, bytes as
latin-1 text, with the jobs' pidfds attached in the same order.
"""

from __future__ import annotations

import atexit
import collections
import fcntl
import json
import os
import select
import socket
import struct
import sys
import threading
import time
from typing import Any

_READY_TIMEOUT_S = 60.0  # a fresh interpreter on a loaded machine
_KEEP_S = 60.0           # how long a living Manager may take to record an end it was told of
_PIDFD_GET_INFO = (3 << 30) | (64 << 16) | (0xFF << 8) | 11  # _IOWR(0xFF, 11, 64-byte struct)
_PIDFD_INFO_EXIT = 1 << 3
_EXIT_CODE_AT = 60       # offset of exit_code in struct pidfd_info
_BATCH = 64              # pidfds per message (SCM_RIGHTS carries up to 253)
_LINGER_S = 0.002        # how long a started job's pidfd may wait for others to share a message


def exit_info(pidfd: int) -> int | None:
    """The wait status the kernel kept for a reaped process, None if it has none (not yet
    reaped, or a kernel before 6.15)."""
    buf = bytearray(64)
    struct.pack_into("Q", buf, 0, _PIDFD_INFO_EXIT)
    try:
        fcntl.ioctl(pidfd, _PIDFD_GET_INFO, buf, True)
    except OSError:
        return None
    if not struct.unpack_from("Q", buf, 0)[0] & _PIDFD_INFO_EXIT:
        return None
    return struct.unpack_from("i", buf, _EXIT_CODE_AT)[0]


def kernel_keeps_exit_status() -> bool:
    """Whether a pidfd holder learns a reaped process's exit status (Linux 6.15+): a
    probe child, reaped here, must show its exit code 7 through its pidfd."""
    try:
        pid = os.posix_spawn("/bin/sh", ["sh", "-c", "exit 7"], {})
    except OSError:
        return False
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        os.waitpid(pid, 0)
        return False
    try:
        os.waitpid(pid, 0)
        status = exit_info(fd)
        return status is not None and os.waitstatus_to_exitcode(status) == 7
    except ChildProcessError:
        return False
    finally:
        os.close(fd)


# -- the keeper process ----------------------------------------------------------------------

def _write_exit(path: bytes, code: int) -> None:
    try:
        out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(out, b"%d\n" % code)
        finally:
            os.close(out)
    except OSError as e:
        print(f"lwfm keeper: cannot write {os.fsdecode(path)}: {e}", file=sys.stderr, flush=True)


def _serve(req: socket.socket) -> None:
    """Watch the pidfds the Manager sends until it has gone and every job is reaped.

    While the Manager lives it records each end itself; an exit file is then needed only
    for an end it might not have recorded yet when it went. So ends are kept for
    :data:`_KEEP_S`, written when the Manager goes, and written at once after that."""
    ep = select.epoll()
    ep.register(req.fileno(), select.EPOLLIN)
    jobs: dict[int, bytes] = {}   # pidfd -> the job's exit file
    recent: collections.deque[tuple[float, bytes, int]] = collections.deque()
    live: socket.socket | None = req
    while live is not None or jobs:
        for fd, events in ep.poll():
            if live is not None and fd == live.fileno():
                try:
                    data, fds, flags, _ = socket.recv_fds(live, 1 << 20, _BATCH)
                except OSError:
                    data, fds, flags = b"", [], 0
                if flags & socket.MSG_CTRUNC:  # out of fds here: those jobs go unwatched
                    print("lwfm keeper: some job pidfds were dropped (open-files limit); "
                          "their ends are left to the grace rule", file=sys.stderr, flush=True)
                if not data and not fds:  # the Manager closed or died
                    ep.unregister(fd)
                    live.close()
                    live = None
                    for _, path, code in recent:
                        _write_exit(path, code)
                    recent.clear()
                    continue
                msg: dict[str, Any] = json.loads(data)
                for pidfd, path in zip(fds, msg["exit"]):
                    jobs[pidfd] = path.encode("latin-1")
                    ep.register(pidfd, 0)   # no IN (it exited): only HUP, once it is reaped
            elif fd in jobs and events & select.EPOLLHUP:
                status = exit_info(fd)
                path = jobs.pop(fd)
                ep.unregister(fd)
                os.close(fd)
                if status is None:
                    continue
                code = os.waitstatus_to_exitcode(status)
                if live is None:
                    _write_exit(path, code)
                else:
                    now = time.monotonic()
                    recent.append((now, path, code))
                    while recent and recent[0][0] < now - _KEEP_S:
                        recent.popleft()


def main(argv: list[str]) -> int:
    req = socket.socket(fileno=int(argv[0]))
    req.set_inheritable(False)
    if os.fork():
        os._exit(0)  # the submitter waits for this one; the keeper is nobody's zombie there
    os.chdir("/")    # hold no directory busy
    req.send(b'{"ready":%d}' % os.getpid())
    _serve(req)
    return 0


# -- the Manager's end -----------------------------------------------------------------------

class KeeperLost(OSError):
    """The keeper process is gone (killed, crashed): start another for the next jobs."""


class KeeperClient:
    """One keeper process, seen from the LocalRun that started it."""

    def __init__(self, label: str, log: str):
        self.req, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            child.set_inheritable(True)
            pid = os.posix_spawn(sys.executable, [
                sys.executable, "-I", "-S", __file__, str(child.fileno()), label],
                os.environ, setpgroup=0, file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
                (os.POSIX_SPAWN_DUP2, 1, 2)])
        except OSError:
            self.req.close()
            raise
        finally:
            child.close()
        try:
            os.waitpid(pid, 0)  # the first process exits at once; its child is the keeper
        except ChildProcessError:
            pass  # someone else in this process reaped it: no matter
        self.req.settimeout(_READY_TIMEOUT_S)
        try:
            ready = self.req.recv(256)
        except OSError:
            ready = b""
        if not ready:
            self.req.close()
            raise OSError(f"the local job keeper did not start (see {log})")
        self.req.settimeout(None)
        self.pid: int = json.loads(ready)["ready"]

        self._cv = threading.Condition()
        self._pending: list[tuple[int, str]] = []   # (our dup of a job's pidfd, its exit file)
        self._lost: OSError | None = None
        self._closing = False
        self._sender = threading.Thread(target=self._send_loop, name="lwfm-keeper-handoff",
                                        daemon=True)
        self._sender.start()
        atexit.register(self.close)  # a Manager never closed still hands off its last jobs

    def watch(self, pidfd: int, exit_file: str) -> None:
        """Hand the keeper a job's pidfd (sent within :data:`_LINGER_S`). The pidfd is
        duplicated: the caller keeps and closes its own. Raises :class:`KeeperLost` if the
        keeper is gone, a plain OSError if the pidfd cannot be duplicated (out of fds)."""
        with self._cv:
            if self._lost is not None:
                raise self._lost
            if self._closing:
                raise KeeperLost("the keeper client is closed")
            self._pending.append((os.dup(pidfd), os.fsencode(exit_file).decode("latin-1")))
            if len(self._pending) == 1 or len(self._pending) >= _BATCH:
                self._cv.notify()

    def _send_loop(self) -> None:
        """The hand-off thread: waits for a first pending pidfd, lingers for others, sends
        them in one message (outside the lock: submits go on meanwhile)."""
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._pending or self._closing)
                if not self._pending:
                    return
                if not self._closing and len(self._pending) < _BATCH:
                    self._cv.wait_for(lambda: self._closing or len(self._pending) >= _BATCH,
                                      timeout=_LINGER_S)
                batch, self._pending = self._pending[:_BATCH], self._pending[_BATCH:]
            self._send(batch)

    def _send(self, batch: list[tuple[int, str]]) -> None:
        """One message; its fds are ours to close, sent or not."""
        try:
            if self._lost is None:
                msg = json.dumps({"exit": [path for _, path in batch]}).encode()
                socket.send_fds(self.req, [msg], [fd for fd, _ in batch])
        except OSError as e:  # the keeper is gone: the next watch() says so
            self._lost = KeeperLost(f"the local job keeper (pid {self.pid}) is gone: {e}")
        finally:
            for fd, _ in batch:
                os.close(fd)

    def close(self) -> None:
        """Send what is pending and let go: the keeper writes the exit files of the jobs
        still running as they end, then exits by itself. Idempotent."""
        with self._cv:
            if self._closing:
                return
            self._closing = True
            self._cv.notify_all()
        if self._sender is not threading.current_thread():
            self._sender.join()
        with self._cv:  # (only if the sender died: what it left)
            batch, self._pending = self._pending, []
        if batch:
            self._send(batch)
        atexit.unregister(self.close)
        self.req.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
