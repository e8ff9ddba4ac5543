"""A foreign crate's own triples, kept whole: parsed, stored as rows, written back out.

Every triple a crate states is kept, in the named graph of that crate
(:func:`lwfm.provenance.vocab.crate_graph_iri`), with the crate's own IRIs and its
literals untouched. Relative ``@id``s resolve against the crate's base,
``arcp://uuid,<crate uuid>/`` (the RO-Crate spec's advice for a crate without a home
on the web), where the uuid is the crate's lwfm origin: derived from the crate's
``identifier``, or from the sha256 of its file, so the same crate has the same base
wherever and however often it is imported.

Parsing is Oxigraph's JSON-LD parser (native), after the crate's context URLs are
replaced by the published documents lwfm ships: nothing is fetched. Blank nodes get
labels of their own crate (``_:c<uuid hex>x<n>``, in document order), as Oxigraph's
blank nodes are shared by every graph of a store. The rows are one per subject: its
triples as N-Triples lines (``crate_nodes``), the unit an export writes as one entity.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

import pyoxigraph as ox

from lwfm.errors import BundleError
from lwfm.ontology import context_document

from lwfm.provenance.vocab import crate_base, iri_safe

from ._common import LWFM_CONTEXTS, LWFM_NS, is_uuid

_XSD_STRING = "http://www.w3.org/2001/XMLSchema#string"
_RDF_TYPE = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"
def _safe_ids(v: Any) -> Any:
    """The crate's values with every ``@id`` made :func:`iri_safe` (a copy where changed)."""
    if isinstance(v, list):
        return [_safe_ids(x) for x in v]
    if isinstance(v, dict):
        out = {k: _safe_ids(x) for k, x in v.items() if k != "@id"}
        if "@id" in v:
            out["@id"] = iri_safe(v["@id"]) if isinstance(v["@id"], str) else v["@id"]
        return out
    return v


def inline_contexts(ctx: Any) -> Any:
    """The crate's @context with each shipped context URL replaced by its document."""
    out = []
    for c in ctx if isinstance(ctx, list) else [ctx]:
        if isinstance(c, str):
            out.append({"lwfm": LWFM_NS} if c in LWFM_CONTEXTS else context_document(c)["@context"])
        else:
            out.append(c)
    return out


SLICE = 5000   # entities parsed at a time: the JSON-LD parser's memory grows with its input


# An "@id" whose value holds a character no IRI may hold, in json.dumps text (where such
# a character is itself, or an escape: a backslash, which is one of them; a quote is
# always escaped, so the first bare quote ends the value).
_UNSAFE_ID = re.compile(r'"@id": "[^"]*?[\x00-\x20<>{}|\\^`\x7f]')


def crate_rows(doc: dict[str, Any], origin: str, where: str) -> list[dict[str, str]]:
    """Every triple of the (vetted) crate document, as ``crate_nodes`` rows of ``origin``.

    A flat @graph's triples are those of its entities one by one, so the graph is parsed
    in slices of SLICE entities (the same context each time): memory stays bounded.
    """
    graph = doc["@graph"]
    ctx = json.dumps(inline_contexts(doc["@context"]))
    rows = _Rows(origin)
    for lo in range(0, len(graph), SLICE):
        part = json.dumps(graph[lo:lo + SLICE])
        if _UNSAFE_ID.search(part):
            part = json.dumps(_safe_ids(graph[lo:lo + SLICE]))
        body = ('{"@context": ' + ctx + ', "@graph": ' + part + "}").encode()
        try:
            # not lenient: that would keep undefined terms as relative IRIs, not drop them.
            # Parsed and serialized natively; Python only groups the lines by subject.
            data = ox.serialize(ox.parse(input=body, format=ox.RdfFormat.JSON_LD,
                                         base_iri=crate_base(origin), without_named_graphs=True),
                                format=ox.RdfFormat.N_TRIPLES)
        except (SyntaxError, ValueError) as e:
            raise BundleError(f"{where}: the crate's JSON-LD does not parse as RDF "
                              f"({str(e)[:200]})") from None
        rows.feed(data.decode())
    return rows.rows()


class _Rows:
    """N-Triples text (one statement a line, as Oxigraph writes it) -> rows by subject,
    blank nodes relabelled for the crate in order of appearance (document order)."""

    def __init__(self, origin: str):
        self.origin = origin
        self.labels: dict[str, str] = {}
        self.prefix = "_:c" + origin.replace("-", "") + "x"
        self.by: dict[str, list[str]] = {}

    def _lab(self, term: str) -> str:
        new = self.labels.get(term)
        if new is None:
            new = self.labels[term] = f"{self.prefix}{len(self.labels)}"
        return new

    def feed(self, text: str) -> None:
        by = self.by
        cur: list[str] = []
        cur_s = None
        pos, end = 0, len(text)
        while pos < end:   # line by line, without a list of them all
            nl = text.find("\n", pos)
            if nl < 0:
                nl = end
            ln = text[pos:nl - 2]   # without the " ." that ends a statement
            pos = nl + 1
            if not ln:
                continue
            if "_:" in ln:
                s, p, o = ln.split(" ", 2)
                if s.startswith("_:"):
                    s = self._lab(s)
                if o.startswith("_:"):
                    o = self._lab(o)
                ln = f"{s} {p} {o}"
            else:
                s = ln[:ln.index(" ")]
            if s != cur_s:   # a subject's statements come together: one flush each
                if cur_s is not None:
                    by.setdefault(cur_s, []).extend(cur)
                cur_s, cur = s, []
            cur.append(ln)
        if cur_s is not None:
            by.setdefault(cur_s, []).extend(cur)

    def rows(self) -> list[dict[str, str]]:
        return [{"crate_id": self.origin, "subject": _bare(s),
                 "triples": "\n".join(dict.fromkeys(lines))} for s, lines in self.by.items()]


def _bare(term: str) -> str:
    """The subject as an entity @id: an IRI without its brackets, a blank node as ``_:x``."""
    return term[1:-1] if term.startswith("<") else term


def check_node_rows(subject: str, value: Any, where: str) -> list[dict[str, str]]:
    """Rows carried by an lwfm bundle (``lwfm:crateTriples``: crate uuid -> N-Triples of
    ``subject``), each re-parsed: only triples about that subject, nothing else."""
    try:
        carried = json.loads(value) if isinstance(value, str) else None
    except (ValueError, RecursionError):
        carried = None
    if not isinstance(carried, dict) or not all(
            is_uuid(k) and isinstance(v, str) for k, v in carried.items()):
        raise BundleError(f"{where}: lwfm:crateTriples is not a map of crate uuid to N-Triples")
    want = subject if subject.startswith("_:") else f"<{subject}>"
    out = []
    for origin, text in sorted(carried.items()):
        try:
            triples = list(_parse(text))
        except (SyntaxError, ValueError) as e:
            raise BundleError(f"{where}: lwfm:crateTriples holds invalid N-Triples "
                              f"({str(e)[:200]})") from None
        lines = []
        for tr in triples:
            s = _node(tr.subject)
            if s != want:
                raise BundleError(f"{where}: lwfm:crateTriples states a triple about "
                                  f"{s[:100]}, not about its entity")
            lines.append(f"{s} {tr.predicate} {_node(tr.object)}")
        if lines:
            out.append({"crate_id": origin, "subject": subject,
                        "triples": "\n".join(dict.fromkeys(lines))})
    return out


def _parse(text: str) -> Iterator[Any]:
    """The triples of a row's lines (N-Triples statements without their final dots)."""
    body = "".join(ln + " .\n" for ln in text.split("\n") if ln.strip())
    return ox.parse(input=body.encode(), format=ox.RdfFormat.N_TRIPLES)


def _node(x: Any) -> str:
    return f"_:{x.value}" if isinstance(x, ox.BlankNode) else str(x)


def entities(rows: Iterable[dict[str, str]]) -> dict[str, dict[str, Any]]:
    """Rows (of one or more crates) as flat JSON-LD entities in expanded-IRI form, one per
    subject, each carrying its rows for lwfm (``lwfm:crateTriples``): JSON-LD readers see
    the crate's triples, an lwfm import gets the rows back exactly."""
    out: dict[str, dict[str, Any]] = {}
    carried: dict[str, dict[str, str]] = {}
    for r in rows:
        subj = r["subject"]
        e = out.setdefault(subj, {"@id": subj})
        carried.setdefault(subj, {})[r["crate_id"]] = r["triples"]
        for tr in _parse(r["triples"]):
            p, o = tr.predicate.value, tr.object
            if p == _RDF_TYPE and isinstance(o, ox.NamedNode):
                vals = e.setdefault("@type", [])
                if o.value not in vals:
                    vals.append(o.value)
                continue
            vals = e.setdefault(p, [])
            v = _value(o)
            if v not in vals:
                vals.append(v)
    for subj, e in out.items():
        e["lwfm:crateTriples"] = json.dumps(carried[subj], sort_keys=True)
    return out


def _value(o: Any) -> dict[str, str]:
    if isinstance(o, ox.NamedNode):
        return {"@id": o.value}
    if isinstance(o, ox.BlankNode):
        return {"@id": f"_:{o.value}"}
    if o.language:
        return {"@value": o.value, "@language": o.language}
    if o.datatype.value == _XSD_STRING:
        return {"@value": o.value}
    return {"@value": o.value, "@type": o.datatype.value}
