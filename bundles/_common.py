"""Shared vocabulary, limits and result types of bundle export and import.

A bundle is a zipped RO-Crate. Everything lwfm needs to rebuild its SQL rows
exactly rides along in ``lwfm:record`` (canonical row JSON); the schema.org /
Workflow Run Crate properties are there so other tools understand the crate.
"""

from __future__ import annotations

import gc
import hashlib
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lwfm import files
from lwfm.provenance import vocab

BUNDLE_FORMAT = "1"
METADATA = "ro-crate-metadata.json"
LWFM_NS = str(vocab.LWFM)
RO_CRATE_1_1 = "https://w3id.org/ro/crate/1.1/context"
# The Workflow Run Crate terms (sha256, containerImage, ParameterConnection, ...): RO-Crate
# 1.1's context lacks them, so a 1.1 crate that uses them names this context too.
WORKFLOW_RUN_TERMS = "https://w3id.org/ro/terms/workflow-run"
LWFM_CONTEXTS = frozenset({"https://w3id.org/lwfm/context", "https://w3id.org/lwfm/context.jsonld"})


def accepted_context(url: str) -> bool:
    """True for the only @context URLs an import accepts: the published contexts lwfm
    ships (``ontology/contexts.json``: RO-Crate 1.1/1.2/1.3, Workflow Run terms), resolved
    locally, and lwfm's own; never fetched."""
    from lwfm.ontology import context_files
    return url in LWFM_CONTEXTS or url in context_files()


# The inline context lwfm writes: a prefix only, so no term of RO-Crate is redefined.
LWFM_CONTEXT = {"lwfm": LWFM_NS}
PROCESS_RUN_CRATE = "https://w3id.org/ro/wfrun/process/0.5"
LICENSE = "https://spdx.org/licenses/CC-BY-4.0"
# Namespace for ids lwfm derives (payload copies, foreign crate entities): stable across runs.
ID_NS = uuid.UUID("6f1d1c2e-3b4a-5c6d-8e7f-90a1b2c3d4e5")

ProgressFn = Callable[[str, int, int], None]


@dataclass
class Limits:
    """Caps an import enforces before trusting a byte of the bundle."""

    max_entries: int = 500_000
    max_total_bytes: int = 8 * 1024 ** 3
    max_metadata_bytes: int = 1536 * 1024 ** 2
    max_ratio: float = 200.0          # uncompressed / compressed, for entries > ratio_floor
    ratio_floor: int = 1024 ** 2
    max_literal: int = 1024 ** 2      # longest string anywhere in the metadata
    max_entities: int = 5_000_000


_CANON = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@contextmanager
def no_cyclic_gc() -> Iterator[None]:
    """The cyclic garbage collector paused: an import or export builds millions of small
    objects (entities, rows) that all live until it ends, and the collector would walk
    them again and again (a fifth of a large import's CPU) to free nothing. Reference
    counting still frees everything as usual; the collector runs again afterwards."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def is_uuid(v: Any) -> bool:
    """True for a uuid in canonical text form (as lwfm writes every id)."""
    return isinstance(v, str) and _CANON.fullmatch(v) is not None


def from_urn(iri: Any) -> str | None:
    """The uuid of a ``urn:uuid:`` IRI (canonical form), else None."""
    if not isinstance(iri, str) or not iri.lower().startswith("urn:uuid:"):
        return None
    if _CANON.fullmatch(iri, 9):
        return iri[9:]
    try:
        return str(uuid.UUID(iri[9:]))
    except ValueError:
        return None


_NS_BYTES = ID_NS.bytes


def derived_id(*parts: str) -> str:
    """``str(uuid.uuid5(ID_NS, "\x1f".join(parts)))``, computed without building UUID
    objects (a foreign crate derives one per action and file)."""
    b = bytearray(hashlib.sha1(_NS_BYTES + "\x1f".join(parts).encode("utf-8")).digest()[:16])
    b[6] = (b[6] & 0x0F) | 0x50
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def sha256_file(path: Path) -> tuple[str, int]:
    """(hex sha256, size in bytes) of a file."""
    return files.sha256_file(path), Path(path).stat().st_size


@dataclass
class ExportResult:
    path: Path
    sha256: str
    instance_id: str
    selection: dict[str, Any]
    counts: dict[str, int]
    payload_files: int = 0
    bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


@dataclass
class Conflict:
    """One contradicting single-valued fact: same record, two different values."""

    kind: str
    id: str
    field: str
    local: Any
    theirs: Any
    resolution: str = "refused"

    def __str__(self) -> str:
        return (f"{self.kind} {self.id} {self.field}: local={self.local!r} "
                f"bundle={self.theirs!r} ({self.resolution})")


@dataclass
class ImportReport:
    file: str
    sha256: str
    origin_instance: str
    foreign: bool = False
    dry_run: bool = False
    bundle_id: str | None = None
    added: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)
    conflicts: list[Conflict] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)
    payload_files: int = 0
    already_imported: str | None = None   # id of an earlier import of this very file
    crate_graph: str | None = None        # a foreign crate's named graph (its own triples)

    @property
    def changed(self) -> bool:
        return any(self.added.values()) or any(self.updated.values())

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["conflicts"] = [asdict(c) for c in self.conflicts]
        d["changed"] = self.changed
        return d
