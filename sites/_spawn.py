"""posix_spawn with what a local job needs: its own process group, stdin from /dev/null,
stdout and stderr to its log, its working directory, and default signal dispositions.

libc's ``posix_spawn`` is bound through ctypes for one action ``os.posix_spawn`` lacks:
``posix_spawn_file_actions_addchdir_np`` (glibc 2.29+, musl 1.1.24+), a working directory
set in the child. (``subprocess.Popen(cwd=...)`` would do it too, but a Popen object that
is dropped is reaped by Python behind the caller's back.) The ctypes call also releases the
GIL while the kernel creates the child, and only then. Where libc cannot be bound,
``os.posix_spawn`` runs the job, behind ``/bin/sh -c 'cd ... && exec ...'`` when it has a working directory.

The caller passes the program's path, already found (the local site looks it up on the
job's own ``PATH``), so argv[0] stays what the user wrote. Stdlib only: the local site's
keeper process (``_keeper.py``) loads this file by path.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import signal

_O_LOG = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
_SETPGROUP = getattr(os, "POSIX_SPAWN_SETPGROUP", 2)
_SETSIGDEF = 4      # POSIX_SPAWN_SETSIGDEF (glibc, musl)
_OPAQUE = 1024      # bytes for posix_spawn_file_actions_t / posix_spawnattr_t / sigset_t
_DEVNULL = os.fsencode(os.devnull)
#: What Python ignores and a job must not inherit ignored (``yes | head`` needs SIGPIPE);
#: subprocess's restore_signals resets the same ones.
_SIGDEF = tuple(s for s in (signal.SIGPIPE, getattr(signal, "SIGXFSZ", None)) if s)
_CD_EXEC = 'cd "$1" || exit 127; shift; exec "$@"'


class _Libc:
    def __init__(self) -> None:
        name = ctypes.util.find_library("c") or None
        libc = ctypes.CDLL(name, use_errno=True)
        # The file actions only fill a struct in memory: bound through PyDLL, they keep the
        # GIL. Each release costs the submitter a wait to take it back while another of
        # its threads runs Python (the recorder's writer, the reaper).
        held = ctypes.PyDLL(name, use_errno=True)
        p, c_int = ctypes.c_void_p, ctypes.c_int
        self.spawn_ = libc.posix_spawn  # (the child's creation releases the GIL)
        self.spawn_.argtypes = [ctypes.POINTER(c_int), ctypes.c_char_p, p, p, p, p]
        self.fa_init = held.posix_spawn_file_actions_init
        self.fa_destroy = held.posix_spawn_file_actions_destroy
        self.fa_open = held.posix_spawn_file_actions_addopen
        self.fa_open.argtypes = [p, c_int, ctypes.c_char_p, c_int, ctypes.c_uint]
        self.fa_dup2 = held.posix_spawn_file_actions_adddup2
        self.fa_dup2.argtypes = [p, c_int, c_int]
        self.fa_chdir = held.posix_spawn_file_actions_addchdir_np  # AttributeError: unbound
        self.fa_chdir.argtypes = [p, ctypes.c_char_p]
        # One attribute set for every job: its own process group (pgid = its pid), and
        # the signals Python ignores back to their defaults.
        self.sigset = ctypes.create_string_buffer(_OPAQUE)
        _check(libc.sigemptyset(self.sigset), errno=True)
        for s in _SIGDEF:
            _check(libc.sigaddset(self.sigset, c_int(s)), errno=True)
        self.attr = ctypes.create_string_buffer(_OPAQUE)
        _check(libc.posix_spawnattr_init(self.attr))
        _check(libc.posix_spawnattr_setflags(self.attr, ctypes.c_short(_SETPGROUP | _SETSIGDEF)))
        _check(libc.posix_spawnattr_setpgroup(self.attr, c_int(0)))
        _check(libc.posix_spawnattr_setsigdefault(self.attr, self.sigset))

    def spawn(self, path: bytes, argv: list[bytes], env: list[bytes], log: bytes,
              cwd: bytes | None) -> int:
        fa = ctypes.create_string_buffer(_OPAQUE)
        _check(self.fa_init(fa))
        try:
            # The log first: its path is absolute, and a chdir must not change where it is.
            _check(self.fa_open(fa, 0, _DEVNULL, os.O_RDONLY, 0))
            _check(self.fa_open(fa, 1, log, _O_LOG, 0o644))
            _check(self.fa_dup2(fa, 1, 2))
            if cwd is not None:
                _check(self.fa_chdir(fa, cwd))
            c_argv = (ctypes.c_char_p * (len(argv) + 1))(*argv, None)
            c_env = (ctypes.c_char_p * (len(env) + 1))(*env, None)
            pid = ctypes.c_int()
            _check(self.spawn_(ctypes.byref(pid), path, fa, self.attr, c_argv, c_env))
            return pid.value
        finally:
            self.fa_destroy(fa)


def _check(err: int, errno: bool = False) -> None:
    if err:
        code = ctypes.get_errno() if errno else err
        raise OSError(code, os.strerror(code))


@functools.cache
def _bound() -> _Libc | None:
    """libc's posix_spawn functions, bound once; None where they cannot be."""
    try:
        return _Libc()
    except (OSError, AttributeError):
        return None


def spawn(path: bytes, argv: list[bytes], env: dict[bytes, bytes], log: bytes,
          cwd: bytes | None = None) -> int:
    """Start the program at ``path`` with ``argv`` (argv[0] as given) and exactly ``env``,
    in its own process group and in ``cwd`` (default: ours), stdin from /dev/null,
    stdout and stderr to ``log`` (an absolute path); returns the pid. Raises OSError
    (ENOENT, EACCES, ...) as os.posix_spawn does."""
    libc = _bound()
    if libc is not None:
        return libc.spawn(path, argv, [k + b"=" + v for k, v in env.items()], log, cwd)
    if cwd is not None:  # os.posix_spawn has no chdir: a shell does it, then execs the job
        argv, path = [b"sh", b"-c", _CD_EXEC.encode(), b"sh", cwd, path, *argv[1:]], b"/bin/sh"
    return os.posix_spawn(path, argv, env, setpgroup=0, setsigdef=_SIGDEF, file_actions=[
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, log, _O_LOG, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2)])
