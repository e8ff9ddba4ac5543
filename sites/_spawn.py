"""posix_spawnp without holding the GIL, for the local site's submit hot path.

``os.posix_spawnp`` keeps the GIL while the kernel creates and execs the child
(about 0.3 ms each), so a burst of submissions starves the threads that reap and
record finished jobs. A call through ctypes releases the GIL for its duration:
the same libc function, while the reaper and recorder run on the other core.
Where libc's posix_spawn cannot be bound, ``os.posix_spawnp`` is used.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

_O_LOG = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
_SETPGROUP = getattr(os, "POSIX_SPAWN_SETPGROUP", 2)
_OPAQUE = 1024   # bytes for posix_spawn_file_actions_t / posix_spawnattr_t (glibc: 80 / 336)
_DEVNULL = os.fsencode(os.devnull)


class _Libc:
    def __init__(self) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        p, c_int = ctypes.c_void_p, ctypes.c_int
        self.spawnp = libc.posix_spawnp
        self.spawnp.argtypes = [ctypes.POINTER(c_int), ctypes.c_char_p, p, p, p, p]
        self.fa_init = libc.posix_spawn_file_actions_init
        self.fa_destroy = libc.posix_spawn_file_actions_destroy
        self.fa_open = libc.posix_spawn_file_actions_addopen
        self.fa_open.argtypes = [p, c_int, ctypes.c_char_p, c_int, ctypes.c_uint]
        self.fa_dup2 = libc.posix_spawn_file_actions_adddup2
        self.fa_dup2.argtypes = [p, c_int, c_int]
        # One attribute set for every job: its own process group (pgid = its pid).
        self.attr = ctypes.create_string_buffer(_OPAQUE)
        _check(libc.posix_spawnattr_init(self.attr))
        _check(libc.posix_spawnattr_setflags(self.attr, ctypes.c_short(_SETPGROUP)))
        _check(libc.posix_spawnattr_setpgroup(self.attr, c_int(0)))

    def spawn(self, argv: list[str], env: dict[bytes, bytes], log: str) -> int:
        fa = ctypes.create_string_buffer(_OPAQUE)
        _check(self.fa_init(fa))
        try:
            _check(self.fa_open(fa, 0, _DEVNULL, os.O_RDONLY, 0))
            _check(self.fa_open(fa, 1, os.fsencode(log), _O_LOG, 0o644))
            _check(self.fa_dup2(fa, 1, 2))
            args = [os.fsencode(a) for a in argv]
            c_argv = (ctypes.c_char_p * (len(args) + 1))(*args, None)
            envp = [k + b"=" + v for k, v in env.items()]
            c_env = (ctypes.c_char_p * (len(envp) + 1))(*envp, None)
            pid = ctypes.c_int()
            _check(self.spawnp(ctypes.byref(pid), args[0], fa, self.attr, c_argv, c_env))
            return pid.value
        finally:
            self.fa_destroy(fa)


def _check(err: int) -> None:
    if err:
        raise OSError(err, os.strerror(err))


@functools.cache
def _bound() -> _Libc | None:
    """libc's posix_spawn functions, bound once; None where they cannot be."""
    try:
        return _Libc()
    except (OSError, AttributeError):
        return None


def spawnp(argv: list[str], env: dict[bytes, bytes], log: str) -> int:
    """Start ``argv`` (PATH-searched) in its own process group, stdin from /dev/null,
    stdout and stderr to ``log``; returns the pid. Raises OSError as os.posix_spawnp."""
    libc = _bound()
    if libc is not None:
        return libc.spawn(argv, env, log)
    return os.posix_spawnp(argv[0], argv, env, setpgroup=0, file_actions=[
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, log, _O_LOG, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2)])
