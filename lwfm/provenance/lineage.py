"""Lineage: what produced a job or data item (``up``), or what it fed (``down``).

One SPARQL query fetches every edge in the closure (Oxigraph evaluates the property
path natively, so a 2000-step chain is milliseconds, where rdflib's evaluator
recurses out of stack); depths come from a breadth-first walk over those edges here.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import LwfmError, NotFound
from .vocab import UP_PATH, node_id, node_iri

if TYPE_CHECKING:
    from .graph import ProvenanceGraph

_EDGE_PREDICATES = "prov:wasGeneratedBy prov:used prov:wasDerivedFrom prov:wasInformedBy"
_REL = {"http://www.w3.org/ns/prov#wasGeneratedBy": "wasGeneratedBy",
        "http://www.w3.org/ns/prov#used": "used",
        "http://www.w3.org/ns/prov#wasDerivedFrom": "wasDerivedFrom",
        "http://www.w3.org/ns/prov#wasInformedBy": "wasInformedBy",
        "https://w3id.org/lwfm/ns#triggeredBy": "triggeredBy"}


@dataclass
class LineageNode:
    id: str
    kind: str            # "job" or "data"
    label: str
    depth: int
    state: str | None = None


@dataclass
class Lineage:
    root: str
    direction: str
    nodes: list[LineageNode] = field(default_factory=list)
    edges: list[tuple[str, str, str]] = field(default_factory=list)  # (effect, relation, cause)

    def to_dict(self) -> dict[str, Any]:
        return {"root": self.root, "direction": self.direction,
                "nodes": [asdict(n) for n in self.nodes],
                "edges": [{"from": a, "rel": r, "to": b} for a, r, b in self.edges]}


def resolve(g: "ProvenanceGraph", ident: str) -> tuple[str, str]:
    """(id, kind) of a job or data item given its id, IRI or a unique job-id prefix."""
    raw = node_id(ident) or ident
    kind = _kind(g, raw)
    if kind is None and len(raw) < 36:
        try:
            raw = g.store.resolve_job_id(raw)
            kind = _kind(g, raw)
        except NotFound:
            pass
    if kind is None:
        raise NotFound(f"no job or data item {ident!r} in the provenance graph "
                       f"(lwfm jobs / lwfm find list ids; lwfm reindex if the graph is stale)")
    return raw, kind


def _kind(g: "ProvenanceGraph", ident: str) -> str | None:
    if any(c in ident for c in "<> \"{}|\\^`"):
        return None
    rows = g.select(f"SELECT ?t WHERE {{ <{node_iri(ident)}> a ?t . "
                    f"VALUES ?t {{ lwfm:Job lwfm:DataObject }} }}")
    if not rows:
        return None
    return "job" if rows[0][0].value.endswith("#Job") else "data"


def lineage(g: "ProvenanceGraph", ident: str, direction: str = "up",
            depth: int | None = None) -> Lineage:
    if direction not in ("up", "down"):
        raise LwfmError(f"lineage direction must be 'up' or 'down', not {direction!r}")
    if depth is not None and depth < 0:
        raise LwfmError("lineage depth must be >= 0")
    root, kind = resolve(g, ident)
    s = f"<{node_iri(root)}>"
    if direction == "up":
        q = f"""SELECT DISTINCT ?a ?p ?b WHERE {{ {s} {UP_PATH}* ?a .
          {{ ?a ?p ?b . VALUES ?p {{ {_EDGE_PREDICATES} }} }}
          UNION {{ ?a lwfm:triggeredBy ?t . ?t lwfm:firedBy ?b . BIND(lwfm:triggeredBy AS ?p) }} }}"""
    else:
        q = f"""SELECT DISTINCT ?a ?p ?b WHERE {{ ?a {UP_PATH}* {s} .
          {{ ?b ?p ?a . VALUES ?p {{ {_EDGE_PREDICATES} }} }}
          UNION {{ ?b lwfm:triggeredBy ?t . ?t lwfm:firedBy ?a . BIND(lwfm:triggeredBy AS ?p) }} }}"""
    adj: dict[str, list[tuple[str, str]]] = {}
    for a, p, b in g.select(q):   # a -> b in walk direction
        adj.setdefault(a.value, []).append((_REL.get(p.value, p.value), b.value))
    start = node_iri(root)
    dist = {start: 0}
    edges: list[tuple[str, str, str]] = []
    todo = deque([start])
    while todo:
        a = todo.popleft()
        if depth is not None and dist[a] >= depth:
            continue
        for rel, b in adj.get(a, ()):
            effect, cause = (a, b) if direction == "up" else (b, a)
            edges.append((node_id(effect) or effect, rel, node_id(cause) or cause))
            if b not in dist:
                dist[b] = dist[a] + 1
                todo.append(b)
    return Lineage(root=root, direction=direction, nodes=_describe(g, dist), edges=edges)


def _describe(g: "ProvenanceGraph", dist: dict[str, int]) -> list[LineageNode]:
    info: dict[str, tuple[str, str, str | None]] = {}
    iris = list(dist)
    for i in range(0, len(iris), 1000):
        values = " ".join(f"<{x}>" for x in iris[i:i + 1000])
        for n, t, name, state in g.select(f"""SELECT ?n ?t ?name ?state WHERE {{
              VALUES ?n {{ {values} }} ?n a ?t . VALUES ?t {{ lwfm:Job lwfm:DataObject }}
              OPTIONAL {{ ?n schema:name ?name }} OPTIONAL {{ ?n lwfm:state ?state }} }}"""):
            kind = "job" if t.value.endswith("#Job") else "data"
            info[n.value] = (kind, name.value if name else "", state.value if state else None)
    out = []
    for iri, d in sorted(dist.items(), key=lambda kv: (kv[1], kv[0])):
        kind, label, state = info.get(iri, ("unknown", "", None))
        out.append(LineageNode(id=node_id(iri) or iri, kind=kind, label=label, depth=d,
                               state=state))
    return out
