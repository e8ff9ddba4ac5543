"""SQL rows -> N-Quads lines: the one mapping from lwfm's tables to its linked data.

Both the incremental sync and the bulk reindex go through these functions, so the two
paths cannot drift apart. Lines (not rdflib or pyoxigraph term objects) because
formatting text is several times faster than building term objects in Python, and
Oxigraph's N-Quads parser then loads them at native speed.

Each row method returns the ``owned`` lines, those whose subject is the row's own node
and whose predicate the row alone decides (replaced when the row changes), and appends
to the ``extra`` list it is given the add-only facts about shared nodes (sites, the
instance, entry points) or links a row adds to another node (a data row's
``job schema:result data``).
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping

from .facts import IRI, STR, TIME, Fact, data_facts, job_facts, workflow_facts
from .vocab import (LWFM, PROV, RDF, SCHEMA, XSD, crate_graph_iri, crate_node_iri,
                    entry_text, graph_iri, meta_iri, node_iri, person_iri, site_iri,
                    software_iri, software_name, status_iri)

Row = Mapping[str, Any]
Lines = list[str]

_ESC = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"})

_TYPE = f"<{RDF.type}>"
_DT = f"^^<{XSD.dateTime}>"
_INT = f"^^<{XSD.integer}>"
# Every lineage edge (generation, usage, derivation, parent, trigger) is also stated as
# its PROV super-property, so lineage is one single-predicate path that Oxigraph walks
# with one index seek per step (add-only: the facts it mirrors never change).
_INFL = f"<{PROV.wasInfluencedBy}>"


def _p(ns: Any, name: str) -> str:
    return f"<{ns[name]}>"


# predicates, pre-formatted once
P = {n: _p(SCHEMA, n) for n in (
    "name", "description", "startTime", "endTime", "actionStatus", "agent", "instrument",
    "object", "result", "isPartOf", "contentUrl", "contentSize", "encodingFormat",
    "dateCreated", "additionalProperty", "value", "identifier", "propertyID")}
P.update({"prov_" + n: _p(PROV, n) for n in (
    "startedAtTime", "endedAtTime", "wasAssociatedWith", "used", "wasGeneratedBy",
    "wasDerivedFrom", "wasInformedBy", "atTime", "actedOnBehalfOf", "wasInfluencedBy")})
P.update({"lwfm_" + n: _p(LWFM, n) for n in (
    "state", "exitCode", "nativeId", "parentJob", "originator", "workflow", "triggeredBy",
    "firedBy", "fires", "watches", "triggerKind", "triggerStatus", "triggerStates", "pattern",
    "reason", "firedAt", "statusOf", "nativeState", "info", "created", "computeType",
    "arguments", "entryKind", "entryPoint", "sha256", "direction", "site", "instance",
    "props", "seq", "originInstance", "importedAt", "brought", "bundleSummary", "retryOf",
    "attempt", "deadline", "atLeast", "crateNode")})
C = {
    "Activity": _p(PROV, "Activity"), "Entity": _p(PROV, "Entity"), "Agent": _p(PROV, "Agent"),
    "CreateAction": _p(SCHEMA, "CreateAction"), "MediaObject": _p(SCHEMA, "MediaObject"),
    "SoftwareApplication": _p(SCHEMA, "SoftwareApplication"),
    "PropertyValue": _p(SCHEMA, "PropertyValue"), "Organization": _p(SCHEMA, "Organization"),
    "Person": _p(SCHEMA, "Person"),
    "Job": _p(LWFM, "Job"), "Data": _p(LWFM, "DataObject"), "Site": _p(LWFM, "Site"),
    "Instance": _p(LWFM, "Instance"), "Workflow": _p(LWFM, "Workflow"),
    "Trigger": _p(LWFM, "Trigger"), "StatusReport": _p(LWFM, "StatusReport"),
    "Bundle": _p(LWFM, "Bundle"),
}


def dt(v: str) -> str:
    """An xsd:dateTime literal in Oxigraph's canonical form (``Z``, no trailing zeros).

    Canonical, so a fact re-projected from an unchanged row is the very same quad and
    the stale-fact diff in the incremental sync removes nothing.
    """
    if v.endswith("+00:00"):
        v = v[:-6] + "Z"
    dot = v.find(".")
    if dot > 0:
        end = dot + 1
        while end < len(v) and v[end].isdigit():
            end += 1
        frac = v[dot + 1:end].rstrip("0")
        v = v[:dot] + ("." + frac if frac else "") + v[end:]
    return f'"{v}"{_DT}'


def lit(s: Any) -> str:
    """An N-Quads string literal."""
    return '"' + str(s).translate(_ESC) + '"'


# How the graph writes a fact (lwfm.provenance.facts): the predicate of each term, and
# the PROV-O property that states the same fact.
_PRED = {**{k: v for k, v in P.items() if not k.startswith(("lwfm_", "prov_"))},
         **{"lwfm:" + k[5:]: v for k, v in P.items() if k.startswith("lwfm_")}}
_ALSO = {"agent": P["prov_wasAssociatedWith"], "startTime": P["prov_startedAtTime"],
         "endTime": P["prov_endedAtTime"], "lwfm:parentJob": P["prov_wasInformedBy"],
         "lwfm:workflow": P["isPartOf"]}


_NOT_IN_IRI = frozenset('<>"{}|^`\\ \t\n\r')


def _iri_ok(v: Any) -> bool:
    """An absolute IRI that can stand between <> in N-Quads."""
    return isinstance(v, str) and ":" in v and not (_NOT_IN_IRI & set(v))


def _json(v: Any) -> str:
    return lit(json.dumps(v, sort_keys=True))


def _defn(v: Any) -> dict[str, Any]:
    return json.loads(v) if isinstance(v, (str, bytes)) else dict(v or {})


class Emitter:
    """Collects lines for one named graph, remembering shared nodes already written."""

    def __init__(self) -> None:
        self.seen: set[str] = set()   # site/instance/software IRIs emitted in this batch
        self._defns: dict[str, dict[str, Any]] = {}   # JSON text -> parsed (repeats a lot)

    def _defn(self, raw: Any) -> dict[str, Any]:
        if not isinstance(raw, str):
            return _defn(raw)
        d = self._defns.get(raw)
        if d is None:
            if len(self._defns) > 4096:
                self._defns.clear()
            d = self._defns[raw] = json.loads(raw)
        return d

    # -- shared, add-only nodes --------------------------------------------------------
    def _first(self, iri: str) -> bool:
        """True the first time a shared node comes up in this batch: write it once."""
        if iri in self.seen:
            return False
        self.seen.add(iri)
        return True

    def instance(self, out: Lines, inst: str, g: str) -> str:
        i = node_iri(inst)
        if self._first(i):
            out += (f"<{i}> {_TYPE} {C['Agent']} {g} .\n",
                    f"<{i}> {_TYPE} {C['Instance']} {g} .\n",
                    f"<{i}> {P['identifier']} {lit(inst)} {g} .\n")
        return i

    def site(self, out: Lines, inst: str, name: str, g: str) -> str:
        s = site_iri(inst, name)
        if self._first(s):
            i = self.instance(out, inst, g)
            out += (f"<{s}> {_TYPE} {C['Agent']} {g} .\n",
                    f"<{s}> {_TYPE} {C['Site']} {g} .\n",
                    f"<{s}> {_TYPE} {C['Organization']} {g} .\n",
                    f"<{s}> {P['name']} {lit(name)} {g} .\n",
                    f"<{s}> {P['lwfm_instance']} <{i}> {g} .\n",
                    f"<{s}> {P['prov_actedOnBehalfOf']} <{i}> {g} .\n")
        return s

    def person(self, out: Lines, inst: str, user: str, g: str) -> str:
        """The user who submitted jobs: a prov:Agent / schema:Person of that instance."""
        p = person_iri(inst, user)
        if self._first(p):
            out += (f"<{p}> {_TYPE} {C['Agent']} {g} .\n",
                    f"<{p}> {_TYPE} {C['Person']} {g} .\n",
                    f"<{p}> {P['name']} {lit(user)} {g} .\n")
        return p

    def software(self, out: Lines, kind: str, entry: Any, g: str) -> str:
        sw = software_iri(kind, entry)
        if self._first(sw):
            out += (f"<{sw}> {_TYPE} {C['SoftwareApplication']} {g} .\n",
                    f"<{sw}> {P['name']} {lit(software_name(entry))} {g} .\n",
                    f"<{sw}> {P['lwfm_entryKind']} {lit(kind)} {g} .\n",
                    f"<{sw}> {P['lwfm_entryPoint']} {lit(entry_text(entry))} {g} .\n")
        return sw

    # -- rows --------------------------------------------------------------------------
    @staticmethod
    def facts(node: str, facts: list[Fact], g: str, o: Lines) -> None:
        """Write shared facts (see .facts): a typed N-Quad each, and PROV-O's name for it."""
        for term, kind, v in facts:
            obj = (f"<{v}>" if kind == IRI else lit(v) if kind == STR else dt(v) if kind == TIME
                   else f'"{v}"{_INT}')
            o.append(f"{node} {_PRED[term]} {obj} {g} .\n")
            if term in _ALSO:
                o.append(f"{node} {_ALSO[term]} {obj} {g} .\n")

    def job(self, r: Row, extra: Lines) -> Lines:
        g = f"<{graph_iri(r['instance_id'])}>"
        j = f"<{node_iri(r['id'])}>"
        d = self._defn(r["defn"])
        self.site(extra, r["instance_id"], r["site"], g)
        self.software(extra, str(d.get("kind", "argv")), d.get("entry", ""), g)
        o = [f"{j} {_TYPE} {C['Activity']} {g} .\n",
             f"{j} {_TYPE} {C['CreateAction']} {g} .\n",
             f"{j} {_TYPE} {C['Job']} {g} .\n"]
        self.facts(j, job_facts(r, d), g, o)   # what an export says too
        if r.get("submitter"):
            person = self.person(extra, r["instance_id"], r["submitter"], g)
            o.append(f"{j} {P['prov_wasAssociatedWith']} <{person}> {g} .\n")
        if r["native_id"] is not None and r["site"] == "imported" and _iri_ok(r["native_id"]):
            # a foreign crate's action: its native id is the action's IRI in the crate
            o.append(f"{j} {P['lwfm_crateNode']} <{r['native_id']}> {g} .\n")
        if r["parent_id"]:
            extra.append(f"{j} {_INFL} <{node_iri(r['parent_id'])}> {g} .\n")
        if d.get("compute_type"):
            o.append(f"{j} {P['lwfm_computeType']} {lit(d['compute_type'])} {g} .\n")
        if d.get("args"):
            o.append(f"{j} {P['lwfm_arguments']} {_json(d['args'])} {g} .\n")
        return o

    @staticmethod
    def status(r: Row, n: int, instance_id: str) -> Lines:
        """One status report; ``n`` is its position in the job's history."""
        g = f"<{graph_iri(instance_id)}>"
        s = f"<{status_iri(r['job_id'], n)}>"
        o = [f"{s} {_TYPE} {C['StatusReport']} {g} .\n",
             f"{s} {P['lwfm_statusOf']} <{node_iri(r['job_id'])}> {g} .\n",
             f"{s} {P['lwfm_state']} \"{r['state']}\" {g} .\n",
             f"{s} {P['prov_atTime']} {dt(r['time'])} {g} .\n"]
        if r["native_state"]:
            o.append(f"{s} {P['lwfm_nativeState']} {lit(r['native_state'])} {g} .\n")
        if r["info"]:
            o.append(f"{s} {P['lwfm_info']} {lit(r['info'])} {g} .\n")
        if r["exit_code"] is not None:
            o.append(f"{s} {P['lwfm_exitCode']} \"{int(r['exit_code'])}\"{_INT} {g} .\n")
        return o

    def data(self, r: Row, meta: Iterable[tuple[str, str]], extra: Lines) -> Lines:
        g = f"<{graph_iri(r['instance_id'])}>"
        did = r["id"]
        d = f"<{node_iri(did)}>"
        self.site(extra, r["instance_id"], r["site"], g)
        o = [f"{d} {_TYPE} {C['Entity']} {g} .\n",
             f"{d} {_TYPE} {C['MediaObject']} {g} .\n",
             f"{d} {_TYPE} {C['Data']} {g} .\n",
             f"{d} {P['contentUrl']} {lit(r['url'])} {g} .\n"]
        self.facts(d, data_facts(r), g, o)   # what an export says too
        if r["sha256"]:
            o.append(f"{d} {P['lwfm_sha256']} {lit(r['sha256'])} {g} .\n")
        if r["derived_from"]:
            src = node_iri(r["derived_from"])
            o.append(f"{d} {P['prov_wasDerivedFrom']} <{src}> {g} .\n")
            extra.append(f"{d} {_INFL} <{src}> {g} .\n")
        for key, value in meta:
            if r["site"] == "imported":   # a foreign crate's file: its node in the crate
                node = crate_node_iri(r["instance_id"], value) if key == "rocrate_id" else \
                    value if key == "rocrate_iri" else None   # (as earlier imports kept it)
                if node is not None and _iri_ok(node):
                    o.append(f"{d} {P['lwfm_crateNode']} <{node}> {g} .\n")
            pv = f"<{meta_iri(did, key)}>"
            o.append(f"{d} {P['additionalProperty']} {pv} {g} .\n")
            extra += (f"{pv} {_TYPE} {C['PropertyValue']} {g} .\n",
                      f"{pv} {P['propertyID']} {lit(key)} {g} .\n",
                      f"{pv} {P['name']} {lit(key)} {g} .\n",
                      f"{pv} {P['value']} {lit(value)} {g} .\n")
        if r["job_id"]:
            j = f"<{node_iri(r['job_id'])}>"
            if r["direction"] == "get":
                extra += (f"{j} {P['prov_used']} {d} {g} .\n",
                          f"{j} {P['object']} {d} {g} .\n",
                          f"{j} {_INFL} {d} {g} .\n")
            else:
                o.append(f"{d} {P['prov_wasGeneratedBy']} {j} {g} .\n")
                extra += (f"{j} {P['result']} {d} {g} .\n", f"{d} {_INFL} {j} {g} .\n")
        return o

    @staticmethod
    def workflow(r: Row) -> Lines:
        g = f"<{graph_iri(r['instance_id'])}>"
        w = f"<{node_iri(r['id'])}>"
        o = [f"{w} {_TYPE} {C['Workflow']} {g} .\n",
             f"{w} {_TYPE} {C['Entity']} {g} .\n"]
        Emitter.facts(w, workflow_facts(r), g, o)   # what an export says too
        props = _defn(r["props"])
        if props:
            o.append(f"{w} {P['lwfm_props']} {_json(props)} {g} .\n")
            root = (props.get("rocrate") or {}).get("root") if isinstance(props.get("rocrate"), dict) else None
            if isinstance(root, str) and _iri_ok(root):
                o.append(f"{w} {P['lwfm_crateNode']} <{root}> {g} .\n")
        return o

    @staticmethod
    def trigger(r: Row, default_instance: str, extra: Lines) -> Lines:
        body = _defn(r["body"])
        g = f"<{graph_iri(body.get('instance_id') or default_instance)}>"
        t = f"<{node_iri(r['id'])}>"
        job = f"<{node_iri(r['job_id'])}>"
        o = [f"{t} {_TYPE} {C['Trigger']} {g} .\n",
             f"{t} {_TYPE} {C['Entity']} {g} .\n",
             f"{t} {P['lwfm_triggerKind']} {lit(r['kind'])} {g} .\n",
             f"{t} {P['lwfm_triggerStatus']} {lit(r['status'])} {g} .\n",
             f"{t} {P['lwfm_fires']} {job} {g} .\n"]
        if body.get("created"):
            o.append(f"{t} {P['dateCreated']} {dt(body['created'])} {g} .\n")
        for w in body.get("watch") or []:
            o.append(f"{t} {P['lwfm_watches']} <{node_iri(w)}> {g} .\n")
        for s in body.get("states") or []:
            o.append(f"{t} {P['lwfm_triggerStates']} {lit(s)} {g} .\n")
        if body.get("pattern"):
            o.append(f"{t} {P['lwfm_pattern']} {_json(body['pattern'])} {g} .\n")
        if body.get("workflow_id"):
            o.append(f"{t} {P['lwfm_workflow']} <{node_iri(body['workflow_id'])}> {g} .\n")
        if body.get("retry_of"):
            o.append(f"{t} {P['lwfm_retryOf']} <{node_iri(body['retry_of'])}> {g} .\n")
            o.append(f"{t} {P['lwfm_attempt']} \"{int(body.get('attempt') or 0)}\"{_INT} {g} .\n")
        if body.get("deadline"):
            o.append(f"{t} {P['lwfm_deadline']} {dt(body['deadline'])} {g} .\n")
        if body.get("at_least") is not None:
            o.append(f"{t} {P['lwfm_atLeast']} \"{int(body['at_least'])}\"{_INT} {g} .\n")
        if r["fired_by"]:
            cause = node_iri(r["fired_by"])
            o.append(f"{t} {P['lwfm_firedBy']} <{cause}> {g} .\n")
            extra.append(f"{job} {_INFL} <{cause}> {g} .\n")
            if body.get("retry_of"):  # an attempt was informed by the one it retries
                extra.append(f"{job} {P['prov_wasInformedBy']} <{cause}> {g} .\n")
            # data futures: every input fed the job (older rows: the one that fired it)
            fed = body.get("used") or ([r["fired_by"]] if body.get("producer") else [])
            for d in fed:
                extra.append(f"{job} {P['prov_used']} <{node_iri(d)}> {g} .\n")
        if r["reason"]:
            o.append(f"{t} {P['lwfm_reason']} {lit(r['reason'])} {g} .\n")
        if r["fired_at"]:
            o.append(f"{t} {P['lwfm_firedAt']} {dt(r['fired_at'])} {g} .\n")
        return o


    @staticmethod
    def crate(rows: Iterable[Row]) -> Lines:
        """A foreign crate's own triples (``crate_nodes`` rows), in its named graph."""
        out: Lines = []
        for r in rows:
            g = f" <{crate_graph_iri(r['crate_id'])}> .\n"
            out += [ln + g for ln in r["triples"].split("\n")]
        return out

    @staticmethod
    def bundle(r: Row, instance_id: str, items: Iterable[str]) -> Lines:
        """An imported bundle, in the importing instance's graph: where it came from,
        when, and which records it brought (the records keep their origin's graph)."""
        g = f"<{graph_iri(instance_id)}>"
        b = f"<{node_iri(r['id'])}>"
        o = [f"{b} {_TYPE} {C['Bundle']} {g} .\n",
             f"{b} {_TYPE} {C['Entity']} {g} .\n",
             f"{b} {P['name']} {lit(r['file_name'])} {g} .\n",
             f"{b} {P['lwfm_sha256']} {lit(r['sha256'])} {g} .\n",
             f"{b} {P['lwfm_originInstance']} <{node_iri(r['origin_instance'])}> {g} .\n",
             f"{b} {P['lwfm_importedAt']} {dt(r['imported_at'])} {g} .\n"]
        summary = _defn(r["summary"])
        if summary:
            o.append(f"{b} {P['lwfm_bundleSummary']} {_json(summary)} {g} .\n")
        for ref in items:
            o.append(f"{b} {P['lwfm_brought']} <{node_iri(ref)}> {g} .\n")
        return o


# Predicates a job row owns on its own node (replaced when the row changes). A data
# row adds job --schema:result/object, prov:used--> data links; those are not here.
JOB_OWNED = frozenset(
    s[1:-1] for s in (_TYPE, P["name"], P["lwfm_created"], P["agent"],
                      P["prov_wasAssociatedWith"], P["instrument"], P["lwfm_state"],
                      P["actionStatus"], P["startTime"], P["prov_startedAtTime"], P["endTime"],
                      P["prov_endedAtTime"], P["lwfm_exitCode"], P["lwfm_nativeId"],
                      P["lwfm_parentJob"], P["prov_wasInformedBy"], P["lwfm_originator"],
                      P["lwfm_workflow"], P["isPartOf"], P["lwfm_triggeredBy"],
                      P["lwfm_computeType"], P["lwfm_arguments"], P["lwfm_crateNode"]))
