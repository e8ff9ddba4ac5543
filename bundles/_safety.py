"""Reading an untrusted bundle: zip and JSON checks before anything is believed.

Every entry is vetted from the central directory first (names, types, sizes,
ratios), and reads are bounded by the declared sizes, which zipfile enforces
together with each entry's CRC. The metadata must be strict JSON with a flat
``@graph`` and only the @contexts lwfm knows, resolved locally, never fetched.
"""

from __future__ import annotations

import io
import json
import stat
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from lwfm.errors import BundleError

from ._common import LWFM_CONTEXTS, LWFM_NS, METADATA, Limits, accepted_context

_ALLOWED_MODES = {0, stat.S_IFREG, stat.S_IFDIR}


def _fail(path: Path | str, why: str) -> BundleError:
    return BundleError(f"{path}: refused: {why}")


def check_name(name: str) -> str | None:
    """Why an entry name is unsafe (zip-slip, absolute, odd characters), or None."""
    if not name or len(name) > 1024 or "\x00" in name or "\\" in name:
        return f"entry name {name[:80]!r} is empty, too long or has NUL/backslash"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return f"entry {name[:80]!r} has an absolute path"
    if any(part in ("..", "") for part in PurePosixPath(name.rstrip("/")).parts) or \
            ".." in name.split("/"):
        return f"entry {name[:80]!r} escapes the bundle (..)"
    return None


@dataclass
class SafeZip:
    """A vetted zip: entries by name, opened with checked sizes."""

    path: Path
    zf: zipfile.ZipFile
    entries: dict[str, zipfile.ZipInfo]

    def read(self, name: str, limit: int) -> bytes:
        info = self.entries.get(name)
        if info is None:
            raise _fail(self.path, f"entry {name!r} is missing")
        if info.file_size > limit:
            raise _fail(self.path, f"entry {name!r} is larger than {limit} bytes")
        try:
            with self.zf.open(info) as f:
                data = f.read(limit + 1)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError,
                NotImplementedError, RuntimeError) as e:
            raise _fail(self.path, f"entry {name!r} is corrupt ({e})") from None
        if len(data) > limit or len(data) != info.file_size:
            raise _fail(self.path, f"entry {name!r} does not have its declared size")
        return data

    def open(self, name: str) -> BinaryIO:
        """A stream of one entry; zipfile stops at the declared size and checks the CRC."""
        try:
            return self.zf.open(self.entries[name])  # type: ignore[return-value]
        except (zipfile.BadZipFile, zlib.error, OSError, ValueError, NotImplementedError,
                RuntimeError) as e:
            raise _fail(self.path, f"entry {name!r} is corrupt ({e})") from None

    def close(self) -> None:
        self.zf.close()


def open_zip(path: Path, limits: Limits) -> SafeZip:
    """Open and vet a bundle; raises BundleError for anything hostile or malformed."""
    try:
        zf = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise BundleError(f"{path}: no such bundle file") from None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as e:
        raise _fail(path, f"not a zip file ({e})") from None
    try:
        infos = zf.infolist()
        if len(infos) > limits.max_entries:
            raise _fail(path, f"{len(infos)} entries (limit {limits.max_entries})")
        entries: dict[str, zipfile.ZipInfo] = {}
        total = 0
        for info in infos:
            name = info.filename
            why = check_name(name)
            if why:
                raise _fail(path, why)
            mode = (info.external_attr >> 16) & 0o170000
            if info.create_system == 3 and mode not in _ALLOWED_MODES:
                kind = "symlink" if stat.S_ISLNK(mode) else "device or special file"
                raise _fail(path, f"entry {name!r} is a {kind}")
            if info.flag_bits & 0x1:
                raise _fail(path, f"entry {name!r} is encrypted")
            if name in entries:
                raise _fail(path, f"entry {name!r} appears twice")
            total += info.file_size
            if total > limits.max_total_bytes:
                raise _fail(path, f"uncompressed size exceeds {limits.max_total_bytes} bytes")
            if info.file_size > limits.ratio_floor and \
                    info.file_size > limits.max_ratio * max(info.compress_size, 1):
                raise _fail(path, f"entry {name!r} compresses {info.file_size}:{info.compress_size}"
                                  f" (ratio limit {limits.max_ratio:g}); looks like a zip bomb")
            entries[name] = info
        if METADATA not in entries:
            raise _fail(path, f"no {METADATA} at the bundle root; not an RO-Crate")
        return SafeZip(path, zf, entries)
    except BaseException:
        zf.close()
        raise


def _no_constants(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def parse_metadata(raw: bytes, where: str, limits: Limits) -> dict[str, Any]:
    """Strict JSON -> the crate document, with a flat @graph of entities by @id."""
    try:
        doc = json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise BundleError(f"{where}: {METADATA} is not valid JSON ({str(e)[:200]})") from None
    if not isinstance(doc, dict):
        raise BundleError(f"{where}: {METADATA} must be a JSON object")
    check_context(doc.get("@context"), where)
    graph = doc.get("@graph")
    if not isinstance(graph, list) or not graph:
        raise BundleError(f"{where}: {METADATA} has no flat @graph list of entities")
    if len(graph) > limits.max_entities:
        raise BundleError(f"{where}: {len(graph)} entities (limit {limits.max_entities})")
    seen: set[str] = set()
    for e in graph:
        check_entity(e, where, seen, limits)
    return doc


def check_entity(e: Any, where: str, seen: set[str], limits: Limits, walk: bool = True) -> None:
    """One @graph member: an object with a fresh string @id, sane @type, bounded literals."""
    if not isinstance(e, dict):
        raise BundleError(f"{where}: an @graph member is not a JSON object")
    eid = e.get("@id")
    if not isinstance(eid, str) or not eid or len(eid) > 2048:
        raise BundleError(f"{where}: an entity has no usable string @id")
    if eid in seen:
        raise BundleError(f"{where}: entity {eid[:100]!r} appears twice in @graph")
    seen.add(eid)
    typ = e.get("@type")
    if typ is not None and not (isinstance(typ, str) or (
            isinstance(typ, list) and all(isinstance(x, str) for x in typ))):
        raise BundleError(f"{where}: entity {eid[:100]!r} has a malformed @type")
    if "@context" in e or "@graph" in e:
        raise BundleError(f"{where}: entity {eid[:100]!r} nests @context/@graph; "
                          "only flat crates are accepted")
    if walk:
        _check_literals(e, eid, where, limits.max_literal)


def _check_literals(e: Any, eid: str, where: str, cap: int, depth: int = 0) -> None:
    """Every string in an entity (keys too) is at most ``cap`` long; nesting is shallow."""
    if depth > 8:
        raise BundleError(f"{where}: entity {eid[:100]!r} nests values too deeply")
    for k, v in (e.items() if type(e) is dict else enumerate(e)):
        tv = type(v)
        if tv is str:
            if len(v) > cap:
                raise BundleError(f"{where}: entity {eid[:100]!r} has a literal of {len(v)} "
                                  f"characters (limit {cap})")
        elif tv is dict and len(v) == 1 and type(v.get("@id")) is str:
            if len(v["@id"]) > cap:  # the common {"@id": ...} reference, without recursing
                raise BundleError(f"{where}: entity {eid[:100]!r} has an over-long reference")
        elif tv is dict or tv is list:
            _check_literals(v, eid, where, cap, depth + 1)
        if type(k) is str and len(k) > 1024:
            raise BundleError(f"{where}: entity {eid[:100]!r} has an over-long property name")


def check_context(ctx: Any, where: str) -> None:
    """Accept only the contexts lwfm ships (RO-Crate 1.1/1.2/1.3, Workflow Run terms),
    lwfm's, and plain inline term maps."""
    if ctx is None:
        raise BundleError(f"{where}: {METADATA} has no @context")
    items = ctx if isinstance(ctx, list) else [ctx]
    if not items:
        raise BundleError(f"{where}: empty @context")
    for item in items:
        if isinstance(item, str):
            if not accepted_context(item):
                raise BundleError(
                    f"{where}: remote or unknown @context {item[:200]!r}: lwfm never fetches a "
                    "context (no network), and resolves locally only the RO-Crate 1.1, 1.2 and "
                    "1.3 contexts, the Workflow Run terms (https://w3id.org/ro/terms/workflow-run) "
                    "and its own. Inline that context's terms in the crate to import it")
        elif isinstance(item, dict):
            for k, v in item.items():
                if not isinstance(k, str) or k.startswith("@"):
                    raise BundleError(f"{where}: inline @context keyword {str(k)[:50]!r} "
                                      "is not accepted (only term and prefix definitions)")
                if isinstance(v, dict):
                    if not set(v) <= {"@id", "@type", "@container"} or \
                            not all(isinstance(x, str) for x in v.values()):
                        raise BundleError(f"{where}: inline @context term {k[:50]!r} "
                                          "is not a plain term definition")
                elif not isinstance(v, str):
                    raise BundleError(f"{where}: inline @context term {k[:50]!r} is malformed")
        else:
            raise BundleError(f"{where}: malformed @context")


def _local_loader(url: str, options: Any = None) -> dict[str, Any]:
    """pyld document loader: the published contexts from the package; nothing else, ever."""
    from pyld import jsonld

    from lwfm.ontology import context_document
    try:
        doc = context_document(url)
    except KeyError:
        raise jsonld.JsonLdError(f"context {url} is not available locally", "jsonld.LoadDocumentError",
                                 code="loading remote context failed") from None
    return {"contextUrl": None, "documentUrl": url, "document": {"@context": doc["@context"]}}


def check_jsonld(doc: dict[str, Any], where: str, max_entities: int = 5000) -> None:
    """Expand small crates with pyld (contexts resolved locally) to catch malformed JSON-LD.

    Large crates (lwfm's own 100k-job threads) get the structural checks above only:
    expansion against the full RO-Crate context would dominate the import.
    """
    if len(doc["@graph"]) > max_entities:
        return
    from pyld import jsonld
    ctx = doc["@context"]
    if isinstance(ctx, list) and any(isinstance(c, str) and c in LWFM_CONTEXTS for c in ctx):
        ctx = [c for c in ctx if not (isinstance(c, str) and c in LWFM_CONTEXTS)] + [{"lwfm": LWFM_NS}]
    try:
        jsonld.expand({**doc, "@context": ctx},
                      {"documentLoader": _local_loader, "base": "arcp://name,lwfm-import/"})
    except jsonld.JsonLdError as e:
        raise BundleError(f"{where}: {METADATA} is not valid JSON-LD "
                          f"({str(getattr(e, 'message', e))[:200]})") from None
    except (RecursionError, TypeError, ValueError, KeyError, AttributeError, IndexError) as e:
        raise BundleError(f"{where}: {METADATA} is not valid JSON-LD ({type(e).__name__})") from None


_HEAD, _TAIL = b'{"@context":', b',"@graph":[\n'


def lwfm_layout(sz: SafeZip) -> bool:
    """Whether the metadata's first line is the one lwfm writes (see :func:`stream_entities`):
    a crate from another engine is not, and is read whole without starting a child to
    find that out. A file that cannot be read answers True: the stream reports it."""
    try:
        with sz.open(METADATA) as raw, io.BufferedReader(raw, 1 << 20) as f:  # type: ignore[arg-type]
            first = f.readline(1 << 20)
    except (BundleError, zipfile.BadZipFile, zlib.error, EOFError, OSError):
        return True
    return first.startswith(_HEAD) and first.endswith(_TAIL)


def stream_entities(sz: SafeZip, limits: Limits) -> Iterator[dict[str, Any]] | None:
    """Entities of a metadata file in lwfm's one-entity-per-line layout, one at a time.

    None if the file does not start like lwfm writes it (then parse it whole). Each line
    must be exactly one entity (``,`` between them, ``]}`` last), so what is accepted here
    is the same document a whole-file parse would accept, with the same checks.
    """
    info = sz.entries[METADATA]
    if info.file_size > limits.max_metadata_bytes:
        raise _fail(sz.path, f"{METADATA} is larger than {limits.max_metadata_bytes} bytes")
    f = io.BufferedReader(sz.open(METADATA), 1 << 20)  # C readline over the inflater
    try:
        first = f.readline(1 << 20)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
        f.close()
        raise _fail(sz.path, f"{METADATA} is corrupt ({e})") from None
    if not (first.startswith(_HEAD) and first.endswith(_TAIL)):
        f.close()
        return None
    where = str(sz.path)
    try:
        ctx = json.loads(first[len(_HEAD):-len(_TAIL)])
    except (ValueError, RecursionError):
        f.close()
        return None
    check_context(ctx, where)
    return _lines(f, where, limits)


def _lines(f: BinaryIO, where: str, limits: Limits) -> Iterator[dict[str, Any]]:
    seen: set[str] = set()
    # The root's hasPart/mentions list every data object and job: its line is long.
    cap = min(limits.max_metadata_bytes, 64 * limits.max_entities + 8 * limits.max_literal)
    more = True   # the previous entity line ended with ',' (or this is the first)
    try:
        with f:
            n = 0
            while True:
                line = f.readline(cap)
                if line in (b"]}\n", b"]}"):
                    if more and n:
                        raise BundleError(f"{where}: {METADATA} has a trailing comma in @graph")
                    if f.read(1):
                        raise BundleError(f"{where}: {METADATA} has data after the document")
                    if not n:
                        raise BundleError(f"{where}: {METADATA} has no entities")
                    return
                if not line.endswith(b"\n") or not more:
                    raise BundleError(f"{where}: {METADATA} line {n + 2} is truncated, over-long "
                                      "or not one entity per line")
                body = line[:-1]
                more = body.endswith(b",")
                if more:
                    body = body[:-1]
                try:
                    e = json.loads(body.decode("utf-8"), parse_constant=_no_constants)
                except (ValueError, RecursionError, UnicodeDecodeError):
                    raise BundleError(f"{where}: {METADATA} line {n + 2} is not valid JSON") from None
                n += 1
                if n > limits.max_entities:
                    raise BundleError(f"{where}: more than {limits.max_entities} entities")
                # A line no longer than the literal cap cannot hold a longer literal.
                check_entity(e, where, seen, limits, walk=len(body) > limits.max_literal)
                yield e
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
        raise _fail(where, f"{METADATA} is corrupt ({e})") from None
