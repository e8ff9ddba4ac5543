"""The IRI scheme and namespaces of lwfm's linked data, shared by the graph and bundles.

Every node has a stable, global IRI derived from the UUID ids of the core, so two
instances that recorded the same job or data object name the same node and their
threads merge by IRI alone:

* job, data object, workflow, trigger, instance: ``urn:uuid:<id>``
* site: ``urn:lwfm:site:<instance_id>:<site name>`` (a site name means something only
  inside the instance whose ``lwfm.toml`` configures it)
* status report: ``urn:lwfm:status:<job_id>:<n>`` (n = 0-based position in the job's
  history as the recording store ordered it)
* data metadata entry (``schema:additionalProperty``):
  ``urn:lwfm:meta:<data_id>:<key>``
* entry point (``schema:instrument``): ``urn:lwfm:software:<sha256 of kind+entry>``,
  so every run of the same program points at one SoftwareApplication node
* named graph of an instance's facts: ``urn:lwfm:graph:<instance_id>``
* named graph of an imported foreign RO-Crate's own triples (its IRIs as the crate
  wrote them, relative ids resolved against ``arcp://uuid,<crate_id>/``):
  ``urn:lwfm:graph:crate:<crate_id>``, beside the lwfm rows mapped from that crate in
  ``urn:lwfm:graph:<crate_id>``; ``lwfm:crateNode`` joins those rows to the crate's nodes
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any
from urllib.parse import quote, urljoin

from rdflib import Namespace
from rdflib.namespace import OWL, PROV, RDF, RDFS, XSD

LWFM = Namespace("https://w3id.org/lwfm/ns#")
SCHEMA = Namespace("http://schema.org/")   # RO-Crate maps schema.org with http://

PREFIXES: dict[str, str] = {
    "lwfm": str(LWFM), "schema": str(SCHEMA), "prov": str(PROV), "rdf": str(RDF),
    "rdfs": str(RDFS), "xsd": str(XSD), "owl": str(OWL),
}

SPARQL_PREFIXES = "".join(f"PREFIX {p}: <{ns}>\n" for p, ns in PREFIXES.items())

# Canonical lwfm state -> schema.org ActionStatusType (RO-Crate Workflow Run Crate usage).
ACTION_STATUS: dict[str, str] = {
    "COMPLETE": "CompletedActionStatus",
    "FAILED": "FailedActionStatus",
    "CANCELLED": "FailedActionStatus",
    "RUNNING": "ActiveActionStatus",
    "FINISHING": "ActiveActionStatus",
    "INFO": "ActiveActionStatus",
    "READY": "PotentialActionStatus",
    "PENDING": "PotentialActionStatus",
    "UNKNOWN": "PotentialActionStatus",
}

_SAFE_ID = re.compile(r"[A-Za-z0-9._~-]+")


def _part(s: str) -> str:
    """An id or name as an IRI segment: uuids pass unchanged, anything else is escaped."""
    return s if _SAFE_ID.fullmatch(s) else quote(s, safe="")


def node_iri(node_id: str) -> str:
    """IRI (as a string) of a job, data object, workflow, trigger or instance."""
    return "urn:uuid:" + _part(node_id)


def node_id(iri: str) -> str | None:
    """The lwfm id inside a ``urn:uuid:`` IRI, else None."""
    return iri[9:] if iri.startswith("urn:uuid:") else None


def site_iri(instance_id: str, site: str) -> str:
    return f"urn:lwfm:site:{_part(instance_id)}:{_part(site)}"


def person_iri(instance_id: str, user: str) -> str:
    """A user account as an agent; scoped by instance, as the same name elsewhere is not
    the same person."""
    return f"urn:lwfm:person:{_part(instance_id)}:{_part(user)}"


def status_iri(job_id: str, n: int) -> str:
    return f"urn:lwfm:status:{_part(job_id)}:{n}"


def meta_iri(data_id: str, key: str) -> str:
    """IRI of one metadata entry (a schema:PropertyValue) of a data object."""
    return f"urn:lwfm:meta:{_part(data_id)}:{_part(key)}"


def graph_iri(instance_id: str) -> str:
    return "urn:lwfm:graph:" + _part(instance_id)


def crate_graph_iri(crate_id: str) -> str:
    return "urn:lwfm:graph:crate:" + _part(crate_id)


# -- the nodes of foreign crates ----------------------------------------------------
_PLACEHOLDER = "http://lwfm-crate-base.invalid/"


def crate_base(crate_id: str) -> str:
    """The base IRI relative ids of a foreign crate resolve against."""
    return f"arcp://uuid,{crate_id}/"


_PLAIN = re.compile(r"[A-Za-z0-9_~#-][A-Za-z0-9._~#%/?=&+-]*")   # no dot segment to remove
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_NOT_IRI = re.compile(r'[\x00-\x20<>"{}|\\^`\x7f]')


def iri_safe(ref: str) -> str:
    """An @id with the characters an IRI cannot hold (spaces, quotes, <>, ...) percent-
    encoded, as RO-Crate asks ids to be: ``my file.txt`` is ``my%20file.txt``. Without
    this a JSON-LD parser drops every triple that names such an id."""
    return _NOT_IRI.sub(lambda m: f"%{ord(m.group()):02X}", ref) if _NOT_IRI.search(ref) else ref


def crate_node_iri(crate_id: str, ref: str) -> str:
    """``ref`` (an entity @id of a foreign crate) as the absolute IRI the crate's triples
    use for it: what ``lwfm:crateNode`` points at."""
    ref = iri_safe(ref)
    if _SCHEME.match(ref):
        return ref
    if _PLAIN.fullmatch(ref) and "/." not in ref and not ref.startswith("/"):
        return crate_base(crate_id) + ref   # the common case: '#x', 'data/a.txt', a hash
    # urljoin resolves only schemes it knows: resolve against a stand-in, then swap
    return crate_base(crate_id) + urljoin(_PLACEHOLDER, ref)[len(_PLACEHOLDER):]


def software_iri(kind: str, entry: Any) -> str:
    digest = hashlib.sha256((kind + "\x00" + entry_text(entry)).encode()).hexdigest()[:32]
    return "urn:lwfm:software:" + digest


def software_name(entry: Any) -> str:
    """What a job's program is called, in the graph and in an export alike: its argv
    joined, a payload's own name, else its text (at most 200 characters)."""
    if isinstance(entry, list):
        name = " ".join(map(str, entry))
    elif isinstance(entry, dict):
        name = str(entry.get("name") or entry_text(entry))
    else:
        name = str(entry)
    return name[:200]


def data_name(url: str) -> str:
    """What a data object is called, in the graph and in an export alike: the last part
    of its URL (the URL itself when it has none)."""
    return url.rstrip("/").rsplit("/", 1)[-1] or url


def entry_text(entry: Any) -> str:
    """The entry point as text: a shell string/callable as is, argv and payloads as JSON."""
    return entry if isinstance(entry, str) else json.dumps(entry, sort_keys=True)


# Lineage walks one predicate: every causal edge lwfm records (data --wasGeneratedBy-->
# job --used--> data --wasDerivedFrom--> data, job --wasInformedBy--> parent, a trigger's
# firedBy) is also stated as its PROV super-property prov:wasInfluencedBy, pointing "up"
# from effect to cause, so lineage is the property path ``prov:wasInfluencedBy+``.
UP_PATH = "prov:wasInfluencedBy"

__all__ = ["ACTION_STATUS", "LWFM", "OWL", "PREFIXES", "PROV", "RDF", "RDFS", "SCHEMA",
           "SPARQL_PREFIXES", "UP_PATH", "XSD", "crate_graph_iri", "data_name", "entry_text",
           "graph_iri",
           "meta_iri", "node_id", "node_iri", "person_iri", "site_iri", "software_iri",
           "software_name", "status_iri"]
