"""A large foreign crate's own triples, parsed in a child process.

Importing a foreign crate is two CPU-bound jobs: mapping its actions and files to
lwfm rows and writing them (this process), and parsing every triple it states
(:func:`._triples.crate_rows`). In one process they take turns on the GIL, and the
writer thread, which needs the GIL for every row it binds, runs at half speed. So a
large crate's triples are parsed by a child (``main()``) on another core, from the
very metadata bytes this process vetted (handed over in an unlinked temp file, not
re-read from the zip), which it vets again exactly as an in-process read does. The
rows come back as plain text, each its subject on one line, its N-Triples lines, and
an empty line (no IRI, blank node label or N-Triples line holds a line break, and a
row has no empty line): splitting that costs a fraction of decoding JSON. A refusal
is one JSON object, ``{"error": ...}``, with the message an in-process read gives,
and exit status 1. Nothing is pickled.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tempfile
from typing import Any

from lwfm.errors import BundleError

from ._common import Limits
from ._parallel import workers

CHILD_MIN = 10_000   # entities from which a foreign crate's triples are parsed in a child
_CHUNK = 5000        # rows per write
# Not ``-m``: the package imports this module first, and runpy warns.
_CHILD = "import sys; from lwfm.bundles._crate_child import main; sys.exit(main())"


def wanted(n_entities: int) -> bool:
    """A child pays for itself on a large crate, and only with a second core."""
    return n_entities >= CHILD_MIN and workers() > 1


class CrateChild:
    """The child parsing one crate's triples; :meth:`rows` waits for them."""

    def __init__(self, raw: bytes, origin: str, where: str, limits: Limits):
        self.where, self.origin = where, origin
        self._err = tempfile.TemporaryFile()   # a file, not a pipe: it never fills and blocks
        try:
            with tempfile.TemporaryFile() as spec:
                spec.write(json.dumps({"origin": origin, "where": where,
                                       "limits": dataclasses.asdict(limits)}).encode() + b"\n")
                spec.write(raw)
                spec.seek(0)
                self.proc = subprocess.Popen([sys.executable, "-c", _CHILD], stdin=spec,
                                             stdout=subprocess.PIPE, stderr=self._err)
        except BaseException:
            self._err.close()
            raise

    def rows(self) -> list[dict[str, str]]:
        """The ``crate_nodes`` rows, as :func:`._triples.crate_rows` makes them."""
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()
        if self.proc.wait() == 1 and out.startswith(b'{"error"'):
            raise BundleError(str(json.loads(out)["error"]))
        if self.proc.returncode != 0:
            self._err.seek(0)
            why = self._err.read().decode(errors="replace").strip()[-800:]
            raise BundleError(f"{self.where}: the crate's triple reader failed "
                              f"(exit {self.proc.returncode}): {why}")
        cid = self.origin
        rows = []
        for part in out.decode().split("\n\n"):
            if part:
                subject, _, triples = part.partition("\n")
                rows.append({"crate_id": cid, "subject": subject, "triples": triples})
        return rows

    def close(self) -> None:
        """Stop the child if it still runs (the import failed or was refused)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._err.close()


def main() -> int:
    import gc

    from ._safety import parse_metadata
    from ._triples import crate_rows
    gc.disable()   # a short-lived process whose objects all live to its end (no_cyclic_gc)
    out = sys.stdout.buffer
    try:
        spec: dict[str, Any] = json.loads(sys.stdin.buffer.readline())
        raw = sys.stdin.buffer.read()
        where = spec["where"]
        doc = parse_metadata(raw, where, Limits(**spec["limits"]))
        del raw
        rows = crate_rows(doc, spec["origin"], where)
        del doc
        for lo in range(0, len(rows), _CHUNK):
            out.write("".join(f"{r['subject']}\n{r['triples']}\n\n"
                              for r in rows[lo:lo + _CHUNK]).encode())
    except BundleError as e:
        out.write(json.dumps({"error": str(e)}).encode() + b"\n")
        return 1
    out.flush()
    return 0
