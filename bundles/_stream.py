"""Read a large lwfm bundle's records in a child process, as batches of rows.

Decoding and validating 100k job records is CPU-bound Python, and so is writing
them; in one process they take turns on the GIL. So the reading runs in a child
(``main(ZIP)``, limits and batch size as JSON on stdin) that vets the
zip again, parses the metadata entity by entity, checks every record exactly as an
in-process read does, and writes one JSON line per batch of rows on stdout; the
importer merges batch k while the child reads batch k+1. Only rows already checked
cross the pipe, as JSON: nothing is pickled. A refusal is one ``error`` line (the
same message an in-process read gives) and a non-zero exit.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lwfm.errors import BundleError
from lwfm.secrets import SECRET_NAME

from ._common import METADATA, Limits
from ._reader import Incoming, LwfmConverter, Payload, lwfm_origin
from ._safety import open_zip, stream_entities

_ROWS = ("workflows", "jobs", "statuses", "data", "triggers", "crate_nodes")


# Not ``-m lwfm.bundles._stream``: the package imports this module first, and runpy warns.
_CHILD = "import sys; from lwfm.bundles._stream import main; sys.exit(main(sys.argv[1]))"


class NotStreamable(Exception):
    """Not lwfm's one-entity-per-line layout after all: read the file whole instead."""


def read_batches(path: Path, limits: Limits, batch: int) -> Iterator[Incoming]:
    """Checked rows of a streamable lwfm bundle, ``batch`` records at a time.

    The last batch carries the payload list. Raises NotStreamable before any batch
    when the file is not laid out (or not an lwfm bundle) as the stream needs.
    """
    sz = open_zip(path, limits)
    try:
        ents = stream_entities(sz, limits)
        if ents is None:
            raise NotStreamable()
        where = str(path)
        small: dict[str, dict[str, Any]] = {}
        conv: LwfmConverter | None = None
        ids: set[str] = set()
        for e in ents:
            if "lwfm:record" not in e and "lwfm:payloadOf" not in e and "lwfm:crateTriples" not in e:
                small[e["@id"]] = e
                continue
            if conv is None:
                root = _root(small)
                if root is None or "lwfm:bundleFormat" not in root:
                    raise NotStreamable()
                conv = LwfmConverter(lwfm_origin(root, where), where, set(sz.entries))
            conv.add(e)
            if "lwfm:record" in e or "lwfm:payloadOf" in e:   # not a crate's node (IRIs are
                rid = e["@id"].lower()                          # case-sensitive there)
                if rid in ids:
                    raise BundleError(f"{where}: two records share the id {e['@id'][:100]}")
                ids.add(rid)
            if conv.size >= batch:
                yield conv.take()
        if conv is None:
            raise NotStreamable()
        if _root(small) is None:
            raise BundleError(f"{where}: no metadata descriptor/root data entity")
        last = conv.take()
        last.payload = conv.finish()
        yield last
    finally:
        sz.close()


def _root(small: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    desc = small.get(METADATA)
    about = desc.get("about") if desc else None
    rid = about.get("@id") if isinstance(about, dict) else None
    return small.get(rid) if isinstance(rid, str) else None


def child_batches(path: Path, limits: Limits, batch: int) -> Iterator[Incoming]:
    """:func:`read_batches`, run in a child process; the child is gone when this ends."""
    with tempfile.TemporaryFile() as err:   # a file, not a pipe: it can never fill and block
        proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(path)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(json.dumps({"limits": dataclasses.asdict(limits), "batch": batch,
                                         # the child redacts with our rule, lwfm.toml's too
                                         "secret_patterns": list(SECRET_NAME.extra_patterns),
                                         }).encode())
            proc.stdin.close()
            for line in proc.stdout:
                msg = json.loads(line)
                if "error" in msg:
                    raise BundleError(msg["error"])
                if "not_streamable" in msg:
                    raise NotStreamable()
                yield Incoming(origin=msg["origin"], foreign=False, info=msg["info"],
                               payload=[Payload(**p) for p in msg["payload"]],
                               **{k: msg[k] for k in _ROWS})
            if proc.wait() != 0:
                err.seek(0)
                why = err.read().decode(errors="replace").strip()[-800:]
                raise BundleError(f"{path}: the bundle reader failed (exit {proc.returncode}): {why}")
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdout.close()


def main(path: str) -> int:
    import gc
    gc.disable()   # a short-lived process whose objects all live to its end (no_cyclic_gc)
    out = sys.stdout.buffer
    try:
        spec = json.loads(sys.stdin.read())
        SECRET_NAME.add_patterns(spec["secret_patterns"])
        for inc in read_batches(Path(path), Limits(**spec["limits"]), int(spec["batch"])):
            msg = {k: getattr(inc, k) for k in _ROWS}
            msg.update(origin=inc.origin, info=inc.info,
                       payload=[dataclasses.asdict(p) for p in inc.payload])
            out.write(json.dumps(msg, separators=(",", ":")).encode() + b"\n")
    except NotStreamable:
        out.write(b'{"not_streamable":true}\n')
    except BundleError as e:
        out.write(json.dumps({"error": str(e)}).encode() + b"\n")
        return 1
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
