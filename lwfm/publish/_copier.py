"""The payload copier as a child process: copy + hash the files, JSON lines both ways.

Why a process: in a thread beside the crate rendering, the copier must take the GIL
back after every read, digest and write (up to the 5 ms switch interval each), so the
two barely overlapped and publish ran nearly serially on two cores. A child has its
own interpreter: it hashes on one core (two threads: sha256 + write beside sha512) while
the parent renders the metadata on the other.

Protocol (JSON lines only, never pickling): the parent writes one JSON object per file,
``{"src", "dst"}``, and closes stdin; the child reads them all first (so neither side can block on a full
pipe), then answers one line per file in order: ``{"sha256", "sha512", "size"}`` or,
for the first file that fails, ``{"errno", "strerror"}`` and stops. The parent owns the
child: :meth:`CopierProcess.close` ends and reaps it, on success, error or Ctrl-C.

Run as ``python -m lwfm.publish._copier`` (``lwfm.publish`` imports lazily, so the
child loads only this module and ``hashing``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

from .hashing import Digests, copy_hashing

MODULE = "lwfm.publish._copier"


class CopierProcess:
    """Starts the child on construction; :meth:`results` yields each file's outcome."""

    def __init__(self, pairs: list[tuple[Path, Path]]):
        self._err: IO[bytes] = tempfile.TemporaryFile()
        root = Path(__file__).resolve().parents[2]  # the lwfm this parent runs
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(root)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", MODULE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=self._err, cwd=root, env=env)
        except BaseException:
            self._err.close()
            raise
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._out = self.proc.stdout
        self._left = len(pairs)  # answers still to come; the child exits after the last
        try:
            self.proc.stdin.write(b"".join(
                json.dumps({"src": os.path.abspath(s), "dst": os.path.abspath(d)}).encode()
                + b"\n" for s, d in pairs))
            self.proc.stdin.close()
        except BaseException:
            self.close()
            raise

    def results(self) -> Iterator[Digests | OSError]:
        """Each file's digests in order, or the OSError that stopped the copy."""
        while line := self._out.readline():
            r = json.loads(line)
            self._left -= 1
            if "errno" in r:
                self._left = 0  # its last answer
                yield OSError(r["errno"], r["strerror"])
                return
            yield Digests(r["sha256"], r["sha512"], r["size"])
        self.proc.wait()
        self._err.seek(0)
        tail = self._err.read()[-2000:].decode(errors="replace").strip()
        raise RuntimeError(f"exit status {self.proc.returncode}" + (f": {tail}" if tail else ""))

    def close(self) -> None:
        """Reap the child; one still copying (an error, Ctrl-C) is killed first."""
        if self._left:
            self.proc.kill()
        try:
            self.proc.wait(timeout=30)  # it has answered all: it is exiting
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._out.close()
        self._err.close()


def _main() -> None:
    """The child: copy every file asked for, answer a line each, stop at the first error."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    jobs = [json.loads(line) for line in sys.stdin.buffer]
    out = sys.stdout.buffer
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lwfm-copy-sha256") as helper:
        for j in jobs:
            try:
                d = copy_hashing(Path(j["src"]), Path(j["dst"]), helper)
                reply: dict[str, Any] = {"sha256": d.sha256, "sha512": d.sha512, "size": d.size}
            except OSError as e:
                reply = {"errno": e.errno, "strerror": e.strerror or str(e)}
            out.write(json.dumps(reply).encode() + b"\n")
            out.flush()
            if "errno" in reply:
                return


if __name__ == "__main__":
    _main()
