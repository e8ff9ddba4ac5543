"""Render the entities of a large export in worker processes, one slice each.

Encoding 100k jobs as JSON is CPU-bound Python; on a multi-core machine each
worker (:func:`main` in a child interpreter, started early: :class:`Workers`) reads
its slice of job and data ids from the store and writes its entities, one encoded
entity per line, plus the instruments and sites it met. The slices are contiguous runs of the metadata's
entity order (jobs, then data), so the parent appends the workers' output in
worker order and the metadata is byte-for-byte what a single process writes. The
first worker writes into a pipe that the parent compresses into the zip while the
others still run; the others write files. Specs and results are JSON: nothing is
pickled.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from lwfm.errors import BundleError
from lwfm.secrets import SECRET_NAME

# Not ``-m lwfm.bundles._parallel``: the package imports this module first, and runpy warns.
_CHILD = "from lwfm.bundles._parallel import main; main()"
PARALLEL_MIN = 20_000   # jobs + data objects from which an export uses workers
JOB_WEIGHT = 2          # a job entity costs about twice a data entity to render
_BLOCK = 1 << 20


def workers() -> int:
    return min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else os.cpu_count() or 1)


def _slices(jobs: list[str], data: list[str], n: int) -> list[tuple[list[str], list[str]]]:
    """``n`` contiguous runs of jobs-then-data of about equal rendering cost."""
    total = JOB_WEIGHT * len(jobs) + len(data)
    out, j, d = [], 0, 0
    for k in range(1, n + 1):
        goal = total * k // n   # cumulative cost at the end of slice k
        j2 = min(len(jobs), -(-goal // JOB_WEIGHT))
        d2 = max(0, min(len(data), goal - JOB_WEIGHT * len(jobs)))
        if k == n:
            j2, d2 = len(jobs), len(data)
        out.append((jobs[j:j2], data[d:d2]))
        j, d = j2, d2
    return out


class Workers:
    """The worker interpreters of one export, started before their slices are known.

    Starting one costs ~0.4 s of imports; an export large enough for workers starts
    them while it still resolves its selection, and each waits for its spec on stdin.
    Whoever makes it closes it: workers still running then (not given a spec, or the
    export failed) are killed, all are reaped, and their scratch folder goes.
    """

    def __init__(self, store_url: str, n: int | None = None):
        n = workers() if n is None else n
        self.tmp = Path(tempfile.mkdtemp(prefix="lwfm-export-"))
        self.procs: list[subprocess.Popen[bytes]] = []
        # The store URL (it may carry a password) goes by environment, never into a file.
        env = {**os.environ, "LWFM_EXPORT_STORE_URL": store_url}
        try:
            for i in range(n):
                with open(self.tmp / f"err-{i}.txt", "wb") as err:
                    self.procs.append(subprocess.Popen(
                        [sys.executable, "-c", _CHILD], env=env, stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE if i == 0 else subprocess.DEVNULL, stderr=err))
        except BaseException:
            self.close()
            raise

    def send(self, i: int, spec: dict[str, Any]) -> None:
        """Give worker ``i`` its slice; one that already died says why once waited for."""
        stdin = self.procs[i].stdin
        assert stdin is not None
        try:
            with stdin:
                stdin.write(json.dumps(spec).encode())
        except BrokenPipeError:
            pass

    def errors(self) -> list[str]:
        return [f"worker {i}: " + (self.tmp / f"err-{i}.txt").read_text(errors="replace")[-800:]
                for i, p in enumerate(self.procs) if p.returncode != 0]

    def close(self) -> None:
        for p in self.procs:
            if p.stdin is not None and not p.stdin.closed:
                with contextlib.suppress(OSError):
                    p.stdin.close()
            if p.returncode is None and p.poll() is None:
                p.kill()
            p.wait()
            if p.stdout is not None:
                p.stdout.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def render_parallel(pool: Workers, jobs: list[str], data: list[str], refs: dict[str, str],
                    w: Any, apps: dict[str, str], sites: set[tuple[str, str]],
                    progress: Any, total: int, runs: Any) -> None:
    """Give ``pool``'s workers their slices, appending their entity lines to ``w`` in slice
    order; closes the pool.

    A worker's output is its entities joined by ``,\\n`` (no separator before the
    first or after the last), so the parent copies it in blocks as it is.
    """
    tmp, procs = pool.tmp, pool.procs
    try:
        for i, (js, ds) in enumerate(_slices(jobs, data, len(procs))):
            pool.send(i, {"jobs": js, "data": ds, "refs": {d: refs[d] for d in ds if d in refs},
                          "secret_patterns": list(SECRET_NAME.extra_patterns),   # from lwfm.toml
                          "out": "-" if i == 0 else str(tmp / f"part-{i}.jsonl"),
                          "extra": str(tmp / f"extra-{i}.json")})
        done = 0
        for i, p in enumerate(procs):
            if i == 0:
                assert p.stdout is not None
                src = p.stdout
            elif p.wait() != 0:
                break
            else:
                src = open(tmp / f"part-{i}.jsonl", "rb")
            with src:
                first = True
                while block := src.read(_BLOCK):
                    if first:
                        w.begin_lines()
                        first = False
                    w.block(block)
                    done += block.count(b"\n")
                    if progress:
                        progress("export", done, total)
        for p in procs:
            p.wait()
        if errors := pool.errors():
            raise BundleError("export worker failed:\n" + "\n".join(errors))
        for i in range(len(procs)):
            extra = json.loads((tmp / f"extra-{i}.json").read_text())
            apps.update(extra["apps"])
            sites.update(tuple(s) for s in extra["sites"])
            runs.update(extra["runs"])
    finally:
        pool.close()


def main() -> None:
    """One worker: import first, then wait for the spec on stdin (none: not needed)."""
    from sqlalchemy import create_engine

    from ._crate import encode_entity, render_data, render_jobs
    from ._workflow import Runs
    raw = sys.stdin.buffer.read()
    if not raw:
        return
    spec = json.loads(raw)
    SECRET_NAME.add_patterns(spec["secret_patterns"])   # the parent's rule, not just ours
    apps: dict[str, str] = {}
    sites: set[tuple[str, str]] = set()
    runs = Runs()
    engine = create_engine(os.environ["LWFM_EXPORT_STORE_URL"])
    out = sys.stdout.buffer if spec["out"] == "-" else open(spec["out"], "wb")
    try:
        with engine.connect() as c:
            buf: list[str] = []
            sep = ""
            for ents in (render_jobs(c, spec["jobs"], apps, sites, runs),
                         render_data(c, spec["data"], spec["refs"], sites)):
                for e in ents:
                    buf.append(encode_entity(e))
                    if len(buf) >= 2000:
                        out.write((sep + ",\n".join(buf)).encode())
                        buf, sep = [], ",\n"
            if buf:
                out.write((sep + ",\n".join(buf)).encode())
    finally:
        out.close()
        engine.dispose()
    Path(spec["extra"]).write_text(json.dumps({"apps": apps, "sites": sorted(sites),
                                               "runs": runs.to_json()}))
