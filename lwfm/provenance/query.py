"""Read-only SPARQL over the union of all named graphs, with output formats.

A query with its own dataset clause (``FROM <g>``, ``FROM NAMED``) gets exactly that
dataset: ``FROM <urn:lwfm:graph:crate:ID>`` asks one imported crate what it said.

The graph is a projection of the SQL store, so writing to it would be lost on the next
``reindex`` and could contradict SQL: UPDATE and its friends are refused. rdflib's
SPARQL parser classifies the text (and gives the error message for malformed queries);
execution goes to Oxigraph through oxrdflib, which never sees an update either way.
"""

from __future__ import annotations

import csv
import io
import json
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ..errors import QueryError
from ..ontology import path as ontology_path

if TYPE_CHECKING:
    from rdflib.query import Result

    from .graph import ProvenanceGraph

FORMATS = ("table", "csv", "json", "turtle", "jsonld")
READ_FORMS = {"SelectQuery": "SELECT", "AskQuery": "ASK", "ConstructQuery": "CONSTRUCT",
              "DescribeQuery": "DESCRIBE"}


def classify(sparql: str) -> str:
    """SELECT/ASK/CONSTRUCT/DESCRIBE, or QueryError (updates refused, syntax errors explained)."""
    return _classify(sparql)[0]


def _classify(sparql: str) -> tuple[str, bool]:
    """The query form, and whether the query names its own dataset (FROM / FROM NAMED)."""
    from pyparsing import ParseException
    from rdflib.plugins.sparql import parser
    if not sparql or not sparql.strip():
        raise QueryError("empty SPARQL query")
    try:
        parsed = parser.parseQuery(sparql)
    except ParseException as e:
        try:
            parser.parseUpdate(sparql)
        except ParseException:
            raise QueryError(f"malformed SPARQL: {e.msg} at line {e.lineno}, column {e.col}: "
                             f"{e.line.strip()!r}") from None
        raise QueryError("the provenance graph is read-only: SPARQL updates (INSERT, DELETE, "
                         "LOAD, CLEAR, DROP, CREATE, ADD, MOVE, COPY) are refused; lwfm writes "
                         "it from the SQL store (`lwfm reindex` rebuilds it)") from None
    form = READ_FORMS.get(parsed[1].name)
    if form is None:   # pragma: no cover - parseQuery only yields the four forms
        raise QueryError(f"unsupported SPARQL query form {parsed[1].name}")
    if "ServiceGraphPattern" in _pattern_names(parsed):
        raise QueryError("SERVICE (a federated query) is refused: it would make this query "
                         "call a remote SPARQL endpoint over the network. Query that endpoint "
                         "directly, or import its thread as a bundle (`lwfm import`)")
    return form, "datasetClause" in parsed[1]


def _pattern_names(tree: Any) -> set[str]:
    """Names of every rdflib ``CompValue`` node in a parse tree (iterative: no depth limit)."""
    from rdflib.plugins.sparql.parserutils import CompValue
    names: set[str] = set()
    todo = [tree]
    while todo:
        x = todo.pop()
        if isinstance(x, CompValue):
            names.add(x.name)
            todo.extend(x.values())
        elif isinstance(x, dict):
            todo.extend(x.values())
        elif isinstance(x, (list, tuple)) or hasattr(x, "as_list"):   # ParseResults
            todo.extend(x)
    return names


@lru_cache(maxsize=1)
def local_context() -> dict[str, Any]:
    """The lwfm JSON-LD context, inline: the remote RO-Crate context is never fetched, so
    its reference is dropped and schema.org/PROV terms are compacted with prefixes."""
    from .vocab import PREFIXES   # rdflib: not at import time (the CLI imports FORMATS)
    doc = json.loads(ontology_path("lwfm-context.jsonld").read_text())
    ctx: dict[str, Any] = {p: PREFIXES[p] for p in ("schema", "xsd", "rdfs")}
    for part in doc["@context"]:
        if isinstance(part, dict):
            ctx.update(part)
    return ctx


def run_query(g: "ProvenanceGraph", sparql: str, fmt: str | None = None) -> Any:
    """The rdflib ``Result`` (fmt None), table rows (``"table"``), or serialized text."""
    if fmt is not None and fmt not in FORMATS:
        raise QueryError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")
    form, own_dataset = _classify(sparql)
    try:
        if own_dataset:
            # FROM <graph> scopes the query to those graphs (e.g. one imported crate's,
            # urn:lwfm:graph:crate:<id>); without it the default graph is the union
            result = g.dataset.store.query(sparql, {}, {}, "__FROM__")
        else:
            result = g.dataset.query(sparql)
    except SyntaxError as e:   # Oxigraph's parser (e.g. an undeclared prefix)
        raise QueryError(f"malformed SPARQL: {e}") from None
    except (ValueError, TypeError, OSError) as e:
        raise QueryError(f"query failed: {e}") from None
    if form in ("CONSTRUCT", "DESCRIBE"):
        result.graph = _plain_strings(result.graph)
    if fmt is None:
        return result
    return render(result, form, fmt)


def _plain_strings(graph: Any) -> Any:
    """xsd:string literals as plain literals (the same in RDF 1.1, but not to rdflib: a
    SHACL ``sh:in ("put")`` or a Turtle reader would see a difference)."""
    from rdflib import Graph, Literal
    from rdflib.namespace import XSD
    out = Graph()
    for prefix, ns in graph.namespaces():
        out.bind(prefix, ns, override=True, replace=True)
    for s, p, o in graph:
        if isinstance(o, Literal) and o.datatype == XSD.string:
            o = Literal(str(o))
        out.add((s, p, o))
    return out


def render(result: "Result", form: str, fmt: str) -> Any:
    if form in ("CONSTRUCT", "DESCRIBE"):
        graph = result.graph
        if fmt == "turtle":
            return graph.serialize(format="turtle")
        if fmt in ("jsonld", "json"):
            return graph.serialize(format="json-ld", context=local_context(), auto_compact=True)
        names = ["subject", "predicate", "object"]
        rows = [tuple(t) for t in sorted(graph)]
        if fmt == "table":
            return names, [[str(x) for x in r] for r in rows]
        return _csv(names, rows)
    if fmt in ("turtle", "jsonld"):
        raise QueryError(f"--format {fmt} needs a CONSTRUCT or DESCRIBE query; "
                         f"use table, csv or json for {form}")
    if form == "ASK":
        answer = bool(result.askAnswer)
        if fmt == "json":
            return json.dumps({"head": {}, "boolean": answer})
        return (["ask"], [[str(answer).lower()]]) if fmt == "table" else str(answer).lower() + "\n"
    names = [str(v) for v in result.vars or []]
    rows = [[row[i] for i in range(len(names))] for row in result]
    if fmt == "json":
        return _sparql_json(names, rows)
    if fmt == "csv":
        return _csv(names, rows)
    return names, [["" if v is None else str(v) for v in r] for r in rows]


def _csv(names: list[str], rows: list[Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(names)
    for r in rows:
        w.writerow(["" if v is None else str(v) for v in r])
    return buf.getvalue()


def _sparql_json(names: list[str], rows: list[list[Any]]) -> str:
    """SPARQL 1.1 Query Results JSON."""
    from rdflib import BNode, Literal, URIRef

    def term(v: Any) -> dict[str, Any] | None:
        if isinstance(v, URIRef):
            return {"type": "uri", "value": str(v)}
        if isinstance(v, BNode):
            return {"type": "bnode", "value": str(v)}
        if isinstance(v, Literal):
            d: dict[str, Any] = {"type": "literal", "value": str(v)}
            if v.language:
                d["xml:lang"] = v.language
            elif v.datatype:
                d["datatype"] = str(v.datatype)
            return d
        return None

    bindings = [{n: t for n, v in zip(names, r) if (t := term(v)) is not None} for r in rows]
    return json.dumps({"head": {"vars": names}, "results": {"bindings": bindings}}, indent=1)
