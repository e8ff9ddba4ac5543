"""RO-Crates written by other workflow systems (cwltool/runcrate, nf-prov, Galaxy, ...).

Every triple of the crate is kept as it is (:mod:`._triples`). On top of that, what
maps becomes lwfm rows, so lineage, thread, export and triggers see foreign runs: each
CreateAction (or Activate/UpdateAction) a job on the pseudo-site ``imported`` (its
native id the action's IRI in the crate), the File/Dataset entities it used
(``object``) or made (``result``) data gets/puts (metadata ``rocrate_id``: the crate's
own @id, whose IRI the graph links as ``lwfm:crateNode``), the crate
one workflow (props ``rocrate.root``), people noted on it. Step runs of a Provenance
Run Crate become children of the workflow run (via its OrganizeAction and
ControlActions). The report lists what has no lwfm row (kept as triples only).
Ids are derived deterministically, so importing the same crate twice adds nothing.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

from lwfm.model import JobDefn, iso, parse_time
from lwfm.provenance.vocab import crate_node_iri as resolve

from ._common import derived_id, from_urn
from ._reader import Incoming, _types, check_row

ACTIONS = {"CreateAction", "ActivateAction", "UpdateAction"}
DATA_TYPES = {"File", "Dataset", "MediaObject"}
_EPOCH = "1970-01-01T00:00:00+00:00"
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_STATE = {"CompletedActionStatus": "COMPLETE", "FailedActionStatus": "FAILED",
          "ActiveActionStatus": "RUNNING", "PotentialActionStatus": "READY"}
_KNOWN_ACTION_PROPS = {"@id", "@type", "name", "description", "instrument", "object", "result",
                       "agent", "startTime", "endTime", "actionStatus", "error", "exitCode"}
_NOTED_TYPES = {"Person", "Organization", "CreativeWork", "SoftwareApplication",
                "ComputationalWorkflow", "SoftwareSourceCode", "OrganizeAction", "ControlAction"}


def _ids(v: Any) -> list[str]:
    items = v if isinstance(v, list) else [v]
    return [x["@id"] for x in items if isinstance(x, dict) and isinstance(x.get("@id"), str)]


def _str(v: Any, cap: int | None = None) -> str | None:
    if isinstance(v, list) and v:
        v = v[0]
    if isinstance(v, dict):
        v = v.get("@id")
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        v = str(v)
    if not isinstance(v, str) or not v:
        return None
    return v[:cap] if cap else v


def _time(v: Any, memo: dict[Any, str | None] | None = None) -> str | None:
    if memo is not None and isinstance(v, str):
        if v not in memo:
            memo[v] = _time(v)
        return memo[v]
    s = _str(v)
    try:
        return iso(parse_time(s)) if s else None
    except (ValueError, TypeError, OverflowError):
        return None


def _crate_key(root: dict[str, Any], sha256: str) -> str:
    return _str(root.get("identifier")) or (root["@id"] if ":" in root["@id"] else f"sha256:{sha256}")


def crate_origin(root: dict[str, Any], sha256: str) -> str:
    """The crate's lwfm origin (the uuid of its rows, named graph and IRI base)."""
    return derived_id("rocrate", _crate_key(root, sha256))


def foreign_batches(by_id: dict[str, dict[str, Any]], root: dict[str, Any], where: str,
                    sha256: str, size: int = 5000) -> Iterator[Incoming]:
    """Map a foreign crate's actions, files and people to lwfm rows, ``size`` actions at a
    time: the first batch (the head: the workflow, the report's notes) is written while
    the rest are mapped. The notes of what did not map come onto the head at the end."""
    key = _crate_key(root, sha256)
    origin = derived_id("rocrate", key)
    inc = head = Incoming(origin=origin, foreign=True, info={"crate": key})
    times: dict[Any, str | None] = {}   # a crate's runs share many times: parse each once
    when = _time(root.get("datePublished")) or _EPOCH
    wf_id = derived_id(key, "workflow")
    people = sorted({_str(by_id[i].get("name")) or i for e in by_id.values()
                     if "agent" in e or "author" in e
                     for i in _ids(e.get("agent")) + _ids(e.get("author"))
                     if i in by_id and "Person" in _types(by_id[i])})
    conforms = sorted(_ids(root.get("conformsTo")))
    inc.workflows.append(check_row("workflow", {
        "id": wf_id, "name": _str(root.get("name")) or "imported RO-Crate",
        "description": _str(root.get("description")) or "",
        "props": {"rocrate": {"crate": key, "conformsTo": conforms, "agents": people,
                              "root": resolve(origin, root["@id"])}},
        "created": when, "instance_id": origin}, where))
    actions = {i: e for i, e in by_id.items() if _types(e) & ACTIONS}
    job_of = {i: from_urn(i) or derived_id(key, "action", i) for i in actions}
    parent = _parents(by_id, actions)
    used: set[str] = {root["@id"]} | set(actions)
    odd_props: Counter = Counter()
    defns = _Defns()
    files = _Files(key, origin, wf_id)
    ordered = sorted(actions.items())
    made = _made(by_id, ordered, files)
    for n, (aid, e) in enumerate(ordered):
        if n and n % size == 0:
            yield inc
            inc = Incoming(origin=origin, foreign=True)
        jid = job_of[aid]
        app = by_id.get(next(iter(_ids(e.get("instrument"))), ""), {})
        used.add(app.get("@id", ""))
        name = _str(e.get("name")) or _str(app.get("name")) or _str(app.get("@id")) or aid
        defn = defns.defn(name, app)
        start, end = _time(e.get("startTime"), times), _time(e.get("endTime"), times)
        status = (_str(e.get("actionStatus")) or "").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
        state = _STATE.get(status) or ("COMPLETE" if end else "UNKNOWN")
        xc = e.get("exitCode")
        exit_code = xc if isinstance(xc, int) and not isinstance(xc, bool) and abs(xc) < 2 ** 31 \
            else None
        created = start or end or when
        sts: list[dict[str, Any]] = []
        if start:
            sts.append({"state": "RUNNING", "native_state": status or None, "info": None,
                        "time": start, "exit_code": None})
        if state != "RUNNING" or not start:
            sts.append({"state": state, "native_state": status or None,
                        "info": _str(e.get("error"), 4000), "time": end or created,
                        "exit_code": exit_code})
        par = job_of.get(parent.get(aid, ""))
        top = aid
        for _ in range(len(actions)):
            if top not in parent:
                break
            top = parent[top]
        inc.jobs.append(check_row("job", {
            "id": jid, "name": name, "defn": defn, "parent_id": par, "originator_id": job_of[top],
            "workflow_id": wf_id, "site": "imported", "native_id": resolve(origin, aid),
            "state": state,
            "exit_code": exit_code, "created": created, "started": start,
            "ended": end if state in ("COMPLETE", "FAILED", "CANCELLED") else None,
            "triggered_by": None, "instance_id": origin}, where))
        inc.statuses[jid] = [check_row("status", s, where) for s in sts]
        if not _KNOWN_ACTION_PROPS.issuperset(e):
            odd_props.update(set(e) - _KNOWN_ACTION_PROPS)
        for direction, prop in (("get", "object"), ("put", "result")):
            if prop not in e:
                continue
            for did in dict.fromkeys(_ids(e[prop])):
                d = by_id.get(did)
                if d is None or not (_types(d) & DATA_TYPES):
                    what = "missing entity" if d is None else "/".join(sorted(_types(d))) or "untyped"
                    head.unmapped.append(f"{prop} {did[:100]} of action {aid[:100]} ({what}): "
                                         "no lwfm data row (kept as the crate's triples)")
                    continue
                used.add(did)
                # (this ``when`` is the one a later action without times is created at)
                when = (end or created) if direction == "put" else created
                row = files.row(jid, aid, d, direction, when)
                if direction == "get":   # a file one action used and another made: one
                    row["derived_from"] = made.get(files.facts_of(d)[1])   # file
                inc.data.append(check_row("data", row, where))
    yield inc
    _report_rest(by_id, used, odd_props, head, root)


def _made(by_id: dict[str, dict[str, Any]], ordered: list[tuple[str, dict[str, Any]]],
          files: "_Files") -> dict[str, str]:
    """File IRI -> the data row of the first action that made it (``result``): a use of
    that file derives from it, so lineage runs from step to step as the crate's ids do."""
    made: dict[str, str] = {}
    for aid, e in ordered:
        if "result" not in e:
            continue
        for did in dict.fromkeys(_ids(e["result"])):
            d = by_id.get(did)
            if d is not None and _types(d) & DATA_TYPES:
                made.setdefault(files.facts_of(d)[1], files.row_id(aid, did, "put"))
    return made


class _Defns:
    """Job definitions of imported runs: one :class:`JobDefn` made (and so validated) per
    tool, each run's a copy of it with the run's name (the only field that differs), its
    lists and tables its own."""

    def __init__(self) -> None:
        self.made: dict[tuple[str | None, tuple[str, ...]], tuple[dict[str, Any], list[str]]] = {}

    def defn(self, name: str, app: dict[str, Any]) -> dict[str, Any]:
        inst, types = _str(app.get("@id")), tuple(sorted(_types(app)))
        entry = {"name": name[:200], "instrument": inst, "types": list(types)}
        got = self.made.get((inst, types))
        if got is None:
            made = JobDefn(entry=entry, kind="payload", name=name[:80], site="imported").to_dict()
            own = [k for k, v in made.items() if k != "entry" and isinstance(v, (list, dict))]
            got = self.made[(inst, types)] = (made, own)
        made, own = got
        out = dict(made)
        out["entry"], out["name"] = entry, name[:80]
        for k in own:
            out[k] = out[k].copy()
        return out


class _Files:
    """Data rows of a crate's files. What a row says of its file (url, size, checksum,
    type, name, IRI) is worked out once per file: a file one run made and the next used
    is two rows (a put and a get) of one entity."""

    def __init__(self, key: str, origin: str, wf_id: str):
        self.key, self.origin, self.wf_id = key, origin, wf_id
        self.facts: dict[str, tuple[dict[str, Any], str, tuple]] = {}

    def _facts(self, d: dict[str, Any]) -> tuple[dict[str, Any], str, tuple]:
        """(metadata, the file's IRI in the crate, the row's columns). The IRI is not
        metadata: the graph derives it from ``rocrate_id`` (one fact, stored once)."""
        did = d["@id"]
        sha = _str(d.get("sha256"))
        sha = sha.lower() if sha and _HEX64.fullmatch(sha) else None
        size: int | None
        try:
            n = int(_str(d.get("contentSize")) or "")
            size = n if 0 <= n < 2 ** 62 else None
        except ValueError:
            size = None
        md = {"rocrate_id": did}
        name = _str(d.get("name")) or _str(d.get("alternateName"))
        if name:
            md["name"] = name[:1000]
        return md, resolve(self.origin, did), (_str(d.get("contentUrl")) or did, size, sha,
                                               _str(d.get("encodingFormat"), 255))

    def facts_of(self, d: dict[str, Any]) -> tuple[dict[str, Any], str, tuple]:
        got = self.facts.get(d["@id"])
        if got is None:
            got = self.facts[d["@id"]] = self._facts(d)
        return got

    def row_id(self, aid: str, did: str, direction: str) -> str:
        return derived_id(self.key, "data", aid, did, direction)

    def row(self, jid: str, aid: str, d: dict[str, Any], direction: str,
            when: str) -> dict[str, Any]:
        did = d["@id"]
        md, _, (url, size, sha, media) = self.facts_of(d)
        return {"id": self.row_id(aid, did, direction),
                "url": url, "site": "imported", "direction": direction,
                "metadata": dict(md), "size": size, "sha256": sha,
                "media_type": media, "job_id": jid, "workflow_id": self.wf_id,
                "derived_from": None, "time": when, "instance_id": self.origin}


def _parents(by_id: dict[str, dict[str, Any]], actions: dict[str, Any]) -> dict[str, str]:
    """Step action -> workflow run action, from OrganizeAction/ControlAction links."""
    out: dict[str, str] = {}
    for e in by_id.values():
        if "OrganizeAction" not in _types(e):
            continue
        runs = [r for r in _ids(e.get("result")) if r in actions]
        if not runs:
            continue
        for ctl in _ids(e.get("object")):
            for step in _ids(by_id.get(ctl, {}).get("object")):
                if step in actions and step != runs[0]:
                    out[step] = runs[0]
    return out


def _report_rest(by_id: dict[str, dict[str, Any]], used: set[str], odd: Counter,
                 inc: Incoming, root: dict[str, Any]) -> None:
    rest: Counter = Counter()
    noted: Counter = Counter()
    for i, e in by_id.items():
        if i in used or i.endswith("ro-crate-metadata.json"):
            continue
        ty = "/".join(sorted(_types(e))) or "untyped"
        (noted if _types(e) & _NOTED_TYPES else rest)[ty] += 1
    for ty, n in sorted(rest.items()):
        inc.unmapped.append(f"{n} entit{'y' if n == 1 else 'ies'} of type {ty}: no lwfm row "
                            "(kept as the crate's triples)")
    for ty, n in sorted(noted.items()):
        inc.unmapped.append(f"{n} {ty} entit{'y' if n == 1 else 'ies'} noted in rows only "
                            "(people on the workflow; tools in job definitions), kept as triples")
    for prop, n in sorted(odd.items()):
        inc.unmapped.append(f"action property {prop!r} ({n}x): no lwfm column "
                            "(kept as the crate's triples)")
    if any(not (":" in i or i.startswith("#") or i == "./") for i in used - {root["@id"]}):
        inc.unmapped.append("payload files of foreign crates are referenced, not copied")
