"""The same provenance as W3C PROV (PROV-JSON), for tools that speak PROV, not schema.org.

Built from the crate's own entities as they stream out (jobs are activities that
used and generated data objects, associated with their site; the publish activity
used the published files and generated the dataset), so it states exactly the
facts of ``ro-crate-metadata.json``. The ``prov`` library reads it in the tests.
"""

from __future__ import annotations

import itertools
from typing import Any

import orjson

PREFIXES = {"uuid": "urn:uuid:", "lwfmsite": "urn:lwfm:site:", "orcid": "https://orcid.org/",
            "lwfm": "https://w3id.org/lwfm/ns#"}


def _q(iri: str) -> str:
    for p, ns in PREFIXES.items():
        if iri.startswith(ns):
            return f"{p}:{iri[len(ns):]}"
    return iri


class ProvDoc:
    """Collects PROV statements; :meth:`dump` writes the PROV-JSON document."""

    def __init__(self) -> None:
        self.doc: dict[str, dict[str, Any]] = {
            "prefix": dict(PREFIXES), "entity": {}, "activity": {}, "agent": {},
            "used": {}, "wasGeneratedBy": {}, "wasAssociatedWith": {}, "wasDerivedFrom": {}}
        self._n = itertools.count()

    def _rel(self, kind: str, body: dict[str, str]) -> None:
        self.doc[kind][f"_:{kind}{next(self._n)}"] = body

    def job(self, e: dict[str, Any]) -> None:
        a = _q(e["@id"])
        act: dict[str, Any] = {"prov:label": e.get("name", "")}
        if e.get("startTime"):
            act["prov:startTime"] = e["startTime"]
        if e.get("endTime"):
            act["prov:endTime"] = e["endTime"]
        self.doc["activity"][a] = act
        agent = e.get("agent", {}).get("@id") if isinstance(e.get("agent"), dict) else None
        if agent:
            self.doc["agent"].setdefault(_q(agent), {"prov:type": "prov:SoftwareAgent"})
            self._rel("wasAssociatedWith", {"prov:activity": a, "prov:agent": _q(agent)})
        for o in e.get("object", []):
            self._rel("used", {"prov:activity": a, "prov:entity": _q(o["@id"])})
        for r in e.get("result", []):
            self._rel("wasGeneratedBy", {"prov:entity": _q(r["@id"]), "prov:activity": a})

    def data(self, e: dict[str, Any]) -> None:
        d = _q(e["@id"])
        ent: dict[str, Any] = {"prov:label": e.get("name", "")}
        if e.get("sha256"):
            ent["lwfm:sha256"] = e["sha256"]
        self.doc["entity"][d] = ent
        src = e.get("isBasedOn")
        if isinstance(src, dict):
            self._rel("wasDerivedFrom", {"prov:generatedEntity": d, "prov:usedEntity": _q(src["@id"])})

    def publish(self, job_iri: str, used: list[str], dataset: str, creators: list[str],
                time: str) -> None:
        a, ds = _q(job_iri), _q(dataset)
        self.doc["activity"][a] = {"prov:label": "publish", "prov:endTime": time}
        self.doc["entity"][ds] = {"prov:label": "published dataset", "prov:type": "prov:Collection"}
        for u in used:
            self._rel("used", {"prov:activity": a, "prov:entity": _q(u)})
        self._rel("wasGeneratedBy", {"prov:entity": ds, "prov:activity": a})
        for c in creators:
            self.doc["agent"].setdefault(_q(c), {"prov:type": "prov:Person"})
            self._rel("wasAssociatedWith", {"prov:activity": a, "prov:agent": _q(c)})

    def dump(self) -> bytes:
        return orjson.dumps({k: v for k, v in self.doc.items() if v}, option=orjson.OPT_SORT_KEYS)
