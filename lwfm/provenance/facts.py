"""Rows -> facts: what the provenance graph and an export both say of a row, stated once.

A fact is ``(term, kind, value)``: ``term`` as lwfm's JSON-LD context names it (schema.org
terms bare, lwfm's own as ``lwfm:x``), ``kind`` how its value is written. The graph
(:mod:`.project`) writes each as an N-Quad (a time as xsd:dateTime, a number as
xsd:integer) and adds PROV-O's name for the same fact; an export (``lwfm.bundles``) writes
each as a JSON-LD property (a time as RO-Crate's plain text). Neither maps these columns
itself, so the two cannot drift apart; ``tests/test_one_mapping.py`` checks that every
property both state has the same values. Tuples, not objects: the export maps 100k jobs.
"""

from __future__ import annotations

from typing import Any, Mapping

from .vocab import ACTION_STATUS, SCHEMA, data_name, node_iri, site_iri, software_iri

STR, TIME, INT, IRI, SIZE = 0, 1, 2, 3, 4   # SIZE: an integer RO-Crate writes as text
Fact = tuple[str, int, Any]

_STATUS = {k: str(SCHEMA[v]) for k, v in ACTION_STATUS.items()}
_LINKS = (("lwfm:parentJob", "parent_id"), ("lwfm:originator", "originator_id"),
          ("lwfm:workflow", "workflow_id"), ("lwfm:triggeredBy", "triggered_by"))


def job_software(defn: Mapping[str, Any]) -> str:
    """The SoftwareApplication node of a job's program (one per program, shared)."""
    return software_iri(str(defn.get("kind", "argv")), defn.get("entry", ""))


def job_facts(r: Mapping[str, Any], defn: Mapping[str, Any]) -> list[Fact]:
    """A job row's facts: its name, program, site, times, state and links (``defn``: the
    row's definition, parsed)."""
    out: list[Fact] = [("name", STR, r["name"]), ("instrument", IRI, job_software(defn)),
                       ("agent", IRI, site_iri(r["instance_id"], r["site"])),
                       ("lwfm:created", TIME, r["created"])]
    st = r["state"]
    if st:
        out.append(("lwfm:state", STR, st))
        if st in _STATUS:
            out.append(("actionStatus", IRI, _STATUS[st]))
    if r["started"]:
        out.append(("startTime", TIME, r["started"]))
    if r["ended"]:
        out.append(("endTime", TIME, r["ended"]))
    if r["exit_code"] is not None:
        out.append(("lwfm:exitCode", INT, int(r["exit_code"])))
    if r["native_id"] is not None:   # as stored: an empty id is not an absent one
        out.append(("lwfm:nativeId", STR, r["native_id"]))
    for term, col in _LINKS:
        if r[col]:
            out.append((term, IRI, node_iri(r[col])))
    return out


def data_facts(r: Mapping[str, Any]) -> list[Fact]:
    """A data row's facts: its name, format, size, time, direction, site and workflow."""
    out: list[Fact] = [("name", STR, data_name(r["url"])), ("dateCreated", TIME, r["time"]),
                       ("lwfm:direction", STR, r["direction"]),
                       ("lwfm:site", IRI, site_iri(r["instance_id"], r["site"]))]
    if r["size"] is not None:
        out.append(("contentSize", SIZE, int(r["size"])))
    if r["media_type"]:
        out.append(("encodingFormat", STR, r["media_type"]))
    if r["workflow_id"]:
        out.append(("lwfm:workflow", IRI, node_iri(r["workflow_id"])))
    return out


def workflow_facts(r: Mapping[str, Any]) -> list[Fact]:
    """A workflow row's facts: its name (empty if it has none), creation and description."""
    out: list[Fact] = [("name", STR, r["name"] or ""), ("dateCreated", TIME, r["created"])]
    if r["description"]:
        out.append(("description", STR, r["description"]))
    return out


def json_ld(facts: list[Fact]) -> dict[str, Any]:
    """Facts as JSON-LD properties, as an export writes them."""
    return {term: ({"@id": v} if kind == IRI else str(v) if kind == SIZE else v)
            for term, kind, v in facts}
