"""Prove the projection: every job, state, status, data, workflow and trigger fact in SQL
is in the graph with the same value, and the graph holds no job or data the SQL lacks.

Deliberately independent of :mod:`lwfm.provenance.project`: it reads the graph back
with SPARQL in the public vocabulary, so a mapping bug cannot agree with itself.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from ..model import parse_time
from ..store import schema as t
from .vocab import ACTION_STATUS, SCHEMA, node_id

if TYPE_CHECKING:
    from .graph import ProvenanceGraph


def _same_time(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return parse_time(a) == parse_time(b)


def check_consistency(g: "ProvenanceGraph") -> list[str]:
    """Differences between the SQL store and the graph, one line each ([] = in sync)."""
    problems: list[str] = []
    with g.store.read() as c:
        jobs = {r["id"]: r for r in c.execute(select(t.jobs)).mappings()}
        hist: dict[str, list[Any]] = defaultdict(list)
        for r in c.execute(select(t.statuses).order_by(t.statuses.c.seq)).mappings():
            hist[r["job_id"]].append(r)
        data = {r["id"]: r for r in c.execute(select(t.data)).mappings()}
        meta: dict[str, dict[str, str]] = defaultdict(dict)
        for r in c.execute(select(t.data_meta)).mappings():
            meta[r["data_id"]][r["key"]] = r["value"]
        wfs = {r["id"]: r for r in c.execute(select(t.workflows)).mappings()}
        trigs = {r["id"]: r for r in c.execute(select(t.triggers)).mappings()}
        bundles = {r["id"]: r["origin_instance"] for r in c.execute(select(t.bundles)).mappings()}

    # -- jobs: one row per job, or the graph holds contradicting values
    got: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for row in g.select_values("""SELECT ?j ?name ?state ?status ?exit ?start ?end ?parent ?wf ?trig
            ?native ?site ?inst WHERE {
          ?j a lwfm:Job ; schema:name ?name ; schema:agent ?s . ?s schema:name ?site ;
             lwfm:instance ?i . ?i schema:identifier ?inst .
          OPTIONAL { ?j lwfm:state ?state } OPTIONAL { ?j schema:actionStatus ?status }
          OPTIONAL { ?j lwfm:exitCode ?exit } OPTIONAL { ?j schema:startTime ?start }
          OPTIONAL { ?j schema:endTime ?end } OPTIONAL { ?j lwfm:parentJob ?parent }
          OPTIONAL { ?j lwfm:workflow ?wf } OPTIONAL { ?j lwfm:triggeredBy ?trig }
          OPTIONAL { ?j lwfm:nativeId ?native } }"""):
        got[node_id(row[0]) or row[0]].append(row)
    for jid, r in jobs.items():
        rows = got.pop(jid, [])
        if len(rows) != 1:
            problems.append(f"job {jid}: {len(rows)} graph descriptions (want 1)")
            continue
        (_, name, state, status, exit_, start, end, parent, wf, trig, native, site,
         inst) = rows[0]
        want = {"name": r["name"], "state": r["state"], "exit": r["exit_code"],
                "parent": r["parent_id"], "workflow": r["workflow_id"],
                "triggered_by": r["triggered_by"], "native_id": r["native_id"],
                "site": r["site"], "instance": r["instance_id"]}
        have = {"name": name, "state": state, "exit": None if exit_ is None else int(exit_),
                "parent": parent and node_id(parent), "workflow": wf and node_id(wf),
                "triggered_by": trig and node_id(trig), "native_id": native, "site": site,
                "instance": inst}
        for k in want:
            if want[k] != have[k]:
                problems.append(f"job {jid}: {k} is {have[k]!r} in the graph, {want[k]!r} in SQL")
        if r["state"] and status != str(SCHEMA[ACTION_STATUS[r["state"]]]):
            problems.append(f"job {jid}: actionStatus {status!r} for state {r['state']}")
        for k, a, b in (("started", start, r["started"]), ("ended", end, r["ended"])):
            if not _same_time(a, b):
                problems.append(f"job {jid}: {k} is {a!r} in the graph, {b!r} in SQL")
    problems += [f"job {j}: in the graph but not in SQL" for j in got]

    # -- status history, in order
    ghist: dict[str, dict[int, tuple[Any, ...]]] = defaultdict(dict)
    for s, j, state, at in g.select_values("""SELECT ?s ?j ?state ?at WHERE {
          ?s a lwfm:StatusReport ; lwfm:statusOf ?j ; lwfm:state ?state ; prov:atTime ?at }"""):
        ghist[node_id(j) or j][int(s.rsplit(":", 1)[1])] = (state, at)
    for jid, rs in hist.items():
        if jid not in jobs:
            continue
        have_h = ghist.get(jid, {})
        if len(have_h) != len(rs):
            problems.append(f"job {jid}: {len(have_h)} status reports in the graph, {len(rs)} in SQL")
        for n, r in enumerate(rs):
            h = have_h.get(n)
            if h is None or h[0] != r["state"] or not _same_time(h[1], r["time"]):
                problems.append(f"job {jid}: status #{n} {r['state']}@{r['time']} is {h!r} in the graph")

    # -- data objects
    gdata: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    # the job of a get used it; a put may be used by any number of jobs (data futures)
    for row in g.select_values("""SELECT ?d ?url ?dir ?size ?sha ?gen ?used ?from WHERE {
          ?d a lwfm:DataObject ; schema:contentUrl ?url ; lwfm:direction ?dir .
          OPTIONAL { ?d schema:contentSize ?size } OPTIONAL { ?d lwfm:sha256 ?sha }
          OPTIONAL { ?d prov:wasGeneratedBy ?gen }
          OPTIONAL { ?used prov:used ?d FILTER(?dir = "get") }
          OPTIONAL { ?d prov:wasDerivedFrom ?from } }"""):
        gdata[node_id(row[0]) or row[0]].append(row)
    gmeta: dict[str, dict[str, str]] = defaultdict(dict)
    for d, k, v in g.select_values("""SELECT ?d ?k ?v WHERE { ?d a lwfm:DataObject ;
          schema:additionalProperty ?p . ?p schema:propertyID ?k ; schema:value ?v }"""):
        gmeta[node_id(d) or d][k] = v
    for did, r in data.items():
        rows = gdata.pop(did, [])
        if len(rows) != 1:
            problems.append(f"data {did}: {len(rows)} graph descriptions (want 1)")
            continue
        _, url, direction, size, sha, gen, used, frm = rows[0]
        job = gen if r["direction"] == "put" else used
        have = {"url": url, "direction": direction, "size": None if size is None else int(size),
                "sha256": sha, "job": job and node_id(job), "derived_from": frm and node_id(frm)}
        want = {"url": r["url"], "direction": r["direction"], "size": r["size"],
                "sha256": r["sha256"], "job": r["job_id"], "derived_from": r["derived_from"]}
        for k in want:
            if want[k] != have[k]:
                problems.append(f"data {did}: {k} is {have[k]!r} in the graph, {want[k]!r} in SQL")
        if gmeta.get(did, {}) != meta.get(did, {}):
            problems.append(f"data {did}: metadata {gmeta.get(did)} in the graph, {meta.get(did)} in SQL")
    problems += [f"data {d}: in the graph but not in SQL" for d in gdata]

    # -- workflows and triggers
    gw = {node_id(w): n for w, n in g.select_values(
        "SELECT ?w ?n WHERE { ?w a lwfm:Workflow ; schema:name ?n }")}
    for wid, r in wfs.items():
        if gw.get(wid) != r["name"]:
            problems.append(f"workflow {wid}: name {gw.get(wid)!r} in the graph, {r['name']!r} in SQL")
    gt: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for tr, st, fb, fires in g.select_values("""SELECT ?t ?st ?fb ?fires WHERE { ?t a lwfm:Trigger ;
          lwfm:triggerStatus ?st ; lwfm:fires ?fires . OPTIONAL { ?t lwfm:firedBy ?fb } }"""):
        gt[node_id(tr) or tr].append((st, fb and node_id(fb), node_id(fires)))
    for tid, r in trigs.items():
        want_t = [(r["status"], r["fired_by"], r["job_id"])]
        if gt.get(tid) != want_t:
            problems.append(f"trigger {tid}: {gt.get(tid)} in the graph, {want_t} in SQL")
    gb = {node_id(b): node_id(o) for b, o in g.select_values("""SELECT ?b ?o WHERE {
          ?b a lwfm:Bundle ; lwfm:originInstance ?o }""")}
    for bid, origin in bundles.items():
        if gb.get(bid) != origin:
            problems.append(f"bundle {bid}: origin {gb.get(bid)!r} in the graph, {origin!r} in SQL")
    return problems
