"""ProvenanceGraph: the rdflib Dataset over Oxigraph that projects the SQL store.

One process at a time may hold Oxigraph's RocksDB directory read-write, so opening
takes an exclusive ``fcntl`` lock on ``<home>/graph.lock`` and a second opener waits
(up to ``lock_timeout``) instead of crashing. Job processes never open the graph; they
write SQL, and whoever opens the graph next catches up from the journal.
"""

from __future__ import annotations

import fcntl
import gc
import os
import shutil
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

import pyoxigraph as ox
from rdflib import Dataset

from ..config import Config
from ..errors import LwfmError
from ..store import Store
from .journal import JournalState
from .project import JOB_OWNED, Emitter, Lines
from .rows import fetch
from .vocab import PREFIXES, PROV, SPARQL_PREFIXES, crate_graph_iri, node_iri

BATCH_EVENTS = 5000
REINDEX_ABOVE = 50_000   # a new graph over more events than this is bulk-built
REINDEX_WINDOW = 1000    # seqs below a reindex's watermark re-read once (PostgreSQL)
_INFLUENCE = str(PROV.wasInfluencedBy)


class GraphBusy(LwfmError):
    """Another process holds the provenance graph open."""


def _lock(path: Path, timeout: float) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise GraphBusy(
                    f"the provenance graph {path.parent / 'graph'} is open in another lwfm "
                    f"process (pid {holder}); waited {timeout:g}s. Retry when it is done, or "
                    f"stop it (e.g. a running `lwfm serve`).") from None
            time.sleep(0.05)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ProvenanceGraph:
    """The provenance graph of one lwfm home: sync, reindex, query, lineage, thread."""

    def __init__(self, config: Config, store: Store, *, lock_timeout: float = 30.0):
        self.config, self.store = config, store
        self.path = Path(config.graph_path)
        self.state_path = self.path.parent / "graph.state.json"
        # reindex builds <graph>.rebuild beside the graph, then swaps (see reindex)
        self._rebuild = self.path.with_name(self.path.name + ".rebuild")
        self._retired = self.path.with_name(self.path.name + ".old")
        self._rebuilt_state = self.path.parent / "graph.rebuild.state.json"
        self._fd: int | None = _lock(config.home / "graph.lock", lock_timeout)
        try:
            self._recover()
            fresh = not self.path.exists()
            self._open_store()
            st = None if fresh else JournalState.load(self.state_path, store.instance_id)
            self._stale = st is None and not fresh   # graph from another store or state lost
            self.state = st or JournalState(store.instance_id)
        except BaseException:
            self._unlock()
            raise

    def _open_store(self) -> None:
        dataset = Dataset(store="Oxigraph", default_union=True)
        for attempt in range(20):   # a just-closed store may linger until collected
            try:
                dataset.open(str(self.path))
                break
            except OSError as e:
                if "lock" not in str(e).lower() or attempt == 19:
                    raise LwfmError(f"cannot open the provenance graph at {self.path}: {e}") from e
                gc.collect()
                time.sleep(0.1)
        for p, ns in PREFIXES.items():
            dataset.bind(p, ns, override=True, replace=True)
        # Only an open store is kept: after a failed reopen (a swap's), close() has none.
        self.ox: ox.Store = dataset.store._inner   # type: ignore[attr-defined]
        self.dataset = dataset

    def _close_store(self) -> None:
        try:
            self.ox.flush()
        finally:
            self.dataset.close()
            del self.ox
            self.dataset = None  # type: ignore[assignment]
            gc.collect()

    # -- lifecycle ------------------------------------------------------------------------
    def close(self) -> None:
        if self._fd is None:
            return
        try:
            if self.dataset is not None:   # None only if a swap failed to reopen
                self._close_store()
        finally:
            self._unlock()

    def _unlock(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "ProvenanceGraph":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self.ox)

    # -- incremental projection -----------------------------------------------------------
    def sync(self, batch: int = BATCH_EVENTS) -> int:
        """Apply journal events past the watermark (and late ones in holes); returns count."""
        last = self.store.last_event()
        if (self._stale or last < self.state.watermark
                or (self.state.watermark == 0 and last > REINDEX_ABOVE)):
            # graph of another store, store recreated, or a big store meets a new graph:
            # the bulk path is several times faster than replaying the journal
            self.reindex()
            return 0
        applied = 0
        while True:
            with self.store.read() as c:
                events = [tuple(r) for r in c.execute(self.state.pending_query(batch))]
            if not events:
                break
            self.apply(events)
            self.state.advance([int(e[0]) for e in events])
            self.state.save(self.state_path)
            applied += len(events)
            if len(events) < batch:
                break
        return applied

    def apply(self, events: Iterable[tuple[int, str, str]]) -> None:
        """Re-project the current rows the events name. Idempotent."""
        refs: dict[str, set[str]] = defaultdict(set)
        for _, kind, ref in events:
            refs[kind].add(ref)
        with self.store.read() as c:
            rows = fetch(c, refs)
        em = Emitter()
        extra: Lines = []
        owned: list[tuple[str, Lines, frozenset[str] | None]] = []
        inst_of: dict[str, str] = {}
        for r in rows.jobs:
            inst_of[r["id"]] = r["instance_id"]
            owned.append((node_iri(r["id"]), em.job(r, extra), JOB_OWNED))
        for r in rows.statuses:   # immutable: add-only
            if r["job_id"] in inst_of:
                extra += em.status(r, r["n"], inst_of[r["job_id"]])
        for r in rows.data:
            owned.append((node_iri(r["id"]), em.data(r, rows.meta.get(r["id"], ()), extra),
                          None))
        for r in rows.workflows:
            owned.append((node_iri(r["id"]), em.workflow(r), None))
        for r in rows.triggers:
            owned.append((node_iri(r["id"]), em.trigger(r, self.store.instance_id, extra), None))
        for r, items in rows.bundles:
            extra += em.bundle(r, self.store.instance_id, items)
        for cid, crows in rows.crates.items():   # a crate's triples: its whole graph anew
            self.ox.remove_graph(ox.NamedNode(crate_graph_iri(cid)))
            extra += em.crate(crows)
        lines: Lines = []
        for subject, new, only in owned:
            self._drop_stale(subject, new, only)
            lines += new
        lines += extra
        if lines:
            self.ox.load(input="".join(lines), format=ox.RdfFormat.N_QUADS, lenient=True)

    def _drop_stale(self, subject: str, new: Lines, only: frozenset[str] | None) -> None:
        """Remove the facts a row no longer states (e.g. the previous actionStatus)."""
        keep = {ln[:-3] for ln in new}   # strip " .\n": matches str(ox.Quad)
        for q in self.ox.quads_for_pattern(ox.NamedNode(subject), None, None, None):
            p = q.predicate.value
            if p == _INFLUENCE or (only is not None and p not in only):
                continue   # wasInfluencedBy mirrors add-only facts: never stale
            if str(q) not in keep:
                self.ox.remove(q)

    # -- bulk rebuild ---------------------------------------------------------------------
    def reindex(self, optimize: bool = True) -> int:
        """Rebuild the graph from the SQL rows alone, beside the old one; returns lines loaded.

        The new graph is built in ``<graph>.rebuild`` while the old one stays as it was,
        then swapped in (:meth:`_swap`): Ctrl-C or kill -9 at any point leaves the old
        graph with its own watermark, or the new one with its own, never an empty graph
        that claims to be current. The swap costs the disk space of a second graph.

        Oxigraph bulk loads read a stream that a producer thread formats from the rows,
        so formatting (Python, holds the GIL) overlaps with parsing and index building
        (Rust, releases it). One load per ~48 MB segment of the stream, not one for
        all: a bulk load's memory grows with its input. ``lenient``
        skips IRI re-validation: every IRI comes from :mod:`.vocab`, which escapes ids
        and names. The watermark is taken *before* reading, so anything written
        meanwhile is applied again by the next sync (harmless: idempotent).
        """
        from .bulk import LineStream, iter_lines
        self._discard(self._rebuild, self._rebuilt_state)
        watermark = self.store.last_event()
        stream = LineStream(iter_lines(self.store))
        new: ox.Store | None = None
        try:
            new = ox.Store(str(self._rebuild))
            while True:
                new.bulk_load(input=stream, format=ox.RdfFormat.N_QUADS, lenient=True)
                if not stream.next_segment():
                    break
            stream.close()
            stream.raise_error()
            if optimize:
                new.optimize()
            new.flush()
        except BaseException:   # Ctrl-C included: the old graph is untouched, drop the new
            stream.close()
            new = None
            gc.collect()
            self._discard(self._rebuild)
            raise
        new = None
        gc.collect()   # close the new store (its RocksDB lock) before the rename
        state = JournalState(self.store.instance_id)
        state.watermark = watermark
        if not self.store.sqlite and watermark:
            # PostgreSQL: transactions still in flight when we read may commit seqs below
            # the watermark; watch a trailing window for them like any other hole
            state.gaps = [[max(1, watermark - REINDEX_WINDOW), watermark, time.time()]]
        state.save(self._rebuilt_state)   # from here on, the new graph is the graph
        self._swap()
        self.state, self._stale = state, False
        return stream.lines

    def _swap(self) -> None:
        """Put the finished rebuild in place of the graph, then reopen it.

        Two renames and a state replace, in an order that :meth:`_recover` completes
        from any point: ``graph.rebuild.state.json`` exists from the moment the new
        graph is complete until its state has become ``graph.state.json``.
        """
        self._close_store()
        try:
            self._recover()
        finally:
            self._open_store()

    def _recover(self) -> None:
        """Finish a swap that a crash interrupted, or drop a rebuild that never finished."""
        if self._rebuilt_state.exists():
            if self._rebuild.exists():
                if self.path.exists():
                    self._discard(self._retired)
                    os.rename(self.path, self._retired)
                os.rename(self._rebuild, self.path)
            os.replace(self._rebuilt_state, self.state_path)
            _fsync_dir(self.path.parent)
        self._discard(self._rebuild, self._retired, self._rebuilt_state.with_suffix(".tmp"))

    @staticmethod
    def _discard(*paths: Path) -> None:
        for p in paths:
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()

    # -- reading --------------------------------------------------------------------------
    def query(self, sparql: str, fmt: str | None = None) -> Any:
        """Run a read-only SPARQL query (see :mod:`lwfm.provenance.query`)."""
        from .query import run_query
        return run_query(self, sparql, fmt)

    def select(self, sparql: str) -> list[tuple[Any, ...]]:
        """Internal fast path: SELECT over the union graph, rows of pyoxigraph terms."""
        res = self.ox.query(SPARQL_PREFIXES + sparql, use_default_graph_as_union=True)
        return [tuple(s) for s in res]

    def select_values(self, sparql: str) -> list[tuple[Any, ...]]:
        """Like :meth:`select`, each term as its lexical value (None when unbound)."""
        return [tuple(None if x is None else x.value for x in row) for row in self.select(sparql)]

    def select_iris(self, sparql: str) -> list[list[str]]:
        """Internal fast path for IRI-only results: TSV serialized natively, split here
        (several times cheaper than one Python object per term)."""
        res = self.ox.query(SPARQL_PREFIXES + sparql, use_default_graph_as_union=True)
        text = res.serialize(format=ox.QueryResultsFormat.TSV).decode()
        return [[c[1:-1] for c in ln.split("\t")] for ln in text.splitlines()[1:] if ln]

    def lineage(self, node_id: str, direction: str = "up", depth: int | None = None):
        from .lineage import lineage
        return lineage(self, node_id, direction, depth)

    def thread(self, workflow_id: str):
        from .thread import thread
        return thread(self, workflow_id)

    def publish(self, query_endpoint: str, update_endpoint: str) -> int:
        """Replace this graph's named graphs on a SPARQL 1.1 server (see :mod:`.remote`)."""
        from .remote import publish
        return publish(self, query_endpoint, update_endpoint)

    def check(self) -> list[str]:
        """Facts in SQL missing from (or contradicted in) the graph; empty when in sync."""
        from .check import check_consistency
        return check_consistency(self)

