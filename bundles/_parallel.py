"""Render the entities of a large export in worker processes, one slice each.

Encoding 100k jobs as JSON is CPU-bound Python; on a multi-core machine each
worker (``python -m lwfm.bundles._parallel SPEC.json``) reads its slice of job and
data ids from the store and writes one encoded entity per line to a file, plus the
instruments and sites it met. The parent copies the files in slice order, so the
metadata is byte-for-byte what a single process writes. Specs and results are
JSON files: nothing is pickled.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lwfm.errors import BundleError

PARALLEL_MIN = 20_000   # jobs + data objects from which an export uses workers


def workers() -> int:
    return min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else os.cpu_count() or 1)


def _slices(ids: list[str], n: int) -> list[list[str]]:
    k, r = divmod(len(ids), n)
    out, i = [], 0
    for j in range(n):
        size = k + (1 if j < r else 0)
        out.append(ids[i:i + size])
        i += size
    return out


def render_parallel(store_url: str, jobs: list[str], data: list[str], refs: dict[str, str],
                    w: Any, apps: dict[str, str], sites: set[tuple[str, str]],
                    progress: Any, total: int) -> None:
    """Run the workers, then append their job lines, then their data lines, to ``w``."""
    n = workers()
    with tempfile.TemporaryDirectory(prefix="lwfm-export-") as tmp:
        procs = []
        for i, (js, ds) in enumerate(zip(_slices(jobs, n), _slices(data, n))):
            spec = {"jobs": js, "data": ds,
                    "refs": {d: refs[d] for d in ds if d in refs}, "dir": tmp, "part": i}
            path = Path(tmp) / f"spec-{i}.json"
            path.write_text(json.dumps(spec))
            # The store URL (it may carry a password) goes by environment, never into a file.
            env = {**os.environ, "LWFM_EXPORT_STORE_URL": store_url}
            procs.append(subprocess.Popen([sys.executable, "-m", "lwfm.bundles._parallel", str(path)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env))
        errors = []
        for i, p in enumerate(procs):
            _, err = p.communicate()
            if p.returncode != 0:
                errors.append(f"worker {i}: {err.decode(errors='replace')[-800:]}")
        if errors:
            raise BundleError("export worker failed:\n" + "\n".join(errors))
        done = 0
        for kind in ("jobs", "data"):
            for i in range(n):
                with open(Path(tmp) / f"{kind}-{i}.jsonl", encoding="ascii") as f:
                    for line in f:
                        w.line(line.rstrip("\n"))
                        done += 1
                        if progress and done % 5000 == 0:
                            progress("export", done, total)
        for i in range(n):
            extra = json.loads((Path(tmp) / f"extra-{i}.json").read_text())
            apps.update(extra["apps"])
            sites.update(tuple(s) for s in extra["sites"])


def _write_lines(path: Path, entities: Iterator[dict[str, Any]]) -> None:
    from ._crate import encode_entity
    with open(path, "w", encoding="ascii") as f:
        buf = []
        for e in entities:
            buf.append(encode_entity(e))
            if len(buf) >= 2000:
                f.write("\n".join(buf) + "\n")
                buf = []
        if buf:
            f.write("\n".join(buf) + "\n")


def main(spec_path: str) -> None:
    from sqlalchemy import create_engine

    from ._crate import render_data, render_jobs
    spec = json.loads(Path(spec_path).read_text())
    out = Path(spec["dir"])
    apps: dict[str, str] = {}
    sites: set[tuple[str, str]] = set()
    engine = create_engine(os.environ["LWFM_EXPORT_STORE_URL"])
    try:
        with engine.connect() as c:
            _write_lines(out / f"jobs-{spec['part']}.jsonl", render_jobs(c, spec["jobs"], apps, sites))
            _write_lines(out / f"data-{spec['part']}.jsonl",
                         render_data(c, spec["data"], spec["refs"], sites))
    finally:
        engine.dispose()
    (out / f"extra-{spec['part']}.json").write_text(json.dumps(
        {"apps": apps, "sites": sorted(sites)}))


if __name__ == "__main__":
    main(sys.argv[1])
