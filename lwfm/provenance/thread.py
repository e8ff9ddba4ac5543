"""The digital thread of a workflow as a tree: jobs under the job that submitted or
triggered them, data under the job that put or got it. Built from the graph alone.

A tree has one parent per node, but a join waits on many jobs: a triggered job also
lists in ``inputs`` every job its trigger watched, and the renderings draw an edge from
each. A trigger that has not fired is a ``future`` node (the job it would start) whose
``state`` is the trigger's status, pending or dead, with the reason a dead one gives."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import NotFound
from .vocab import node_id, node_iri

if TYPE_CHECKING:
    from .graph import ProvenanceGraph


@dataclass
class ThreadNode:
    id: str
    kind: str                   # workflow | job | data | future
    label: str
    relation: str = ""          # how it hangs under its parent: child, triggered, retry, put,
    #                             get, used (a put another job was fed)
    state: str | None = None    # a job's state; a future's trigger status (pending, dead)
    site: str | None = None
    children: list["ThreadNode"] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)   # jobs its trigger watched (a join: all)
    reason: str | None = None   # why a dead trigger can no longer fire

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "label": self.label,
                "relation": self.relation, "state": self.state, "site": self.site,
                "inputs": self.inputs, "reason": self.reason,
                "children": [c.to_dict() for c in self.children]}

    def walk(self):
        yield self
        for c in self.children:
            yield from c.walk()


def thread(g: "ProvenanceGraph", workflow_id: str) -> ThreadNode:
    wid = node_id(workflow_id) or workflow_id
    w = f"<{node_iri(wid)}>"
    rows = g.select_values(f"SELECT ?n WHERE {{ {w} a lwfm:Workflow ; schema:name ?n }}")
    if not rows:
        raise NotFound(f"no workflow {workflow_id!r} in the provenance graph "
                       f"(lwfm workflows lists them; lwfm reindex if the graph is stale)")
    root = ThreadNode(id=wid, kind="workflow", label=rows[0][0] or wid)
    jobs: dict[str, ThreadNode] = {}
    attach: dict[str, tuple[str | None, str]] = {}
    for j, name, state, parent, cause, retry, site, created in g.select_values(f"""
          SELECT ?j ?name ?state ?parent ?cause ?retry ?site ?created WHERE {{
            ?j lwfm:workflow {w} ; a lwfm:Job ; schema:name ?name ; lwfm:created ?created .
            OPTIONAL {{ ?j lwfm:state ?state }} OPTIONAL {{ ?j lwfm:parentJob ?parent }}
            OPTIONAL {{ ?j lwfm:triggeredBy ?t . ?t lwfm:firedBy ?cause .
                        OPTIONAL {{ ?t lwfm:retryOf ?retry }} }}
            OPTIONAL {{ ?j schema:agent ?a . ?a schema:name ?site }}
          }} ORDER BY ?created ?j"""):
        jid = node_id(j) or j
        jobs[jid] = ThreadNode(id=jid, kind="job", label=name, state=state, site=site)
        p = node_id(parent or "")
        c = node_id(cause or "")
        # an attempt hangs under the attempt it retries, whatever its parent
        attach[jid] = ((c, "retry") if retry and c else (p, "child") if p else
                       (c, "triggered") if c else (None, ""))
    for jid, node in jobs.items():
        up, rel = attach[jid]
        if up in jobs and not _is_ancestor(jid, up, attach):
            node.relation = rel
            jobs[up].children.append(node)
        else:
            node.relation = rel or "part"
            root.children.append(node)
    _triggers(g, w, root, jobs)
    seen: set[tuple[str, str]] = set()
    for d, url, direction, job, via, created in g.select_values(f"""
          SELECT DISTINCT ?d ?url ?dir ?job ?via ?created WHERE {{
            {{ ?d lwfm:workflow {w} }} UNION {{ ?job lwfm:workflow {w} . ?d prov:wasGeneratedBy ?job }}
            UNION {{ ?job lwfm:workflow {w} . ?job prov:used ?d }}
            ?d a lwfm:DataObject ; schema:contentUrl ?url ; lwfm:direction ?dir ;
               schema:dateCreated ?created .
            OPTIONAL {{ {{ ?d prov:wasGeneratedBy ?job BIND("gen" AS ?via) }}
                        UNION {{ ?job prov:used ?d BIND("used" AS ?via) }} }}
          }} ORDER BY ?created ?d ?via"""):
        did = node_id(d) or d
        jid = node_id(job or "")
        if (did, jid or "") in seen:
            continue
        seen.add((did, jid or ""))
        # a put another job was fed (a data future's input) hangs under it as "used"
        rel = "used" if via == "used" and direction == "put" else direction
        node = ThreadNode(id=did, kind="data", label=url, relation=rel)
        (jobs[jid].children if jid in jobs else root.children).append(node)
    return root


def _triggers(g: "ProvenanceGraph", w: str, root: ThreadNode,
              jobs: dict[str, ThreadNode]) -> None:
    """Every job a trigger watched becomes an input of the job it fired; a trigger not
    fired yet becomes a future node under the workflow."""
    found: dict[str, dict[str, Any]] = {}
    for tr, job, status, kind, watched, reason in g.select_values(f"""
          SELECT ?t ?job ?status ?kind ?w ?reason WHERE {{
            ?t a lwfm:Trigger ; lwfm:fires ?job ; lwfm:triggerStatus ?status ;
               lwfm:triggerKind ?kind .
            {{ ?t lwfm:workflow {w} }} UNION {{ ?job lwfm:workflow {w} }}
            OPTIONAL {{ ?t lwfm:watches ?w }} OPTIONAL {{ ?t lwfm:reason ?reason }}
          }} ORDER BY ?t ?w"""):
        jid = node_id(job) or job
        f = found.setdefault(jid, {"status": status, "kind": kind, "reason": reason,
                                   "watch": []})
        wid = node_id(watched or "")
        if wid and wid not in f["watch"]:
            f["watch"].append(wid)
    for jid, f in found.items():
        inputs = [x for x in f["watch"] if x in jobs]
        if jid in jobs:
            jobs[jid].inputs = inputs
            continue
        label = f"future: {f['kind']} trigger" if f["status"] != "dead" else \
            f"dead {f['kind']} trigger"
        root.children.append(ThreadNode(id=jid, kind="future", label=label, relation="waits",
                                        state=f["status"], inputs=inputs, reason=f["reason"]))


def _is_ancestor(jid: str, up: str | None, attach: dict[str, tuple[str | None, str]]) -> bool:
    """Would hanging ``jid`` under ``up`` make a cycle (guards against odd imports)?"""
    seen = set()
    while up is not None and up not in seen:
        if up == jid:
            return True
        seen.add(up)
        up = attach.get(up, (None, ""))[0]
    return False
