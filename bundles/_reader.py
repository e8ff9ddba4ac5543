"""Turn a vetted crate document into the SQL rows it stands for.

lwfm's own bundles carry each row as canonical JSON in ``lwfm:record``; every row
is checked against the column types of the schema (lengths, nullability) and the
model (states, directions, job definitions) before the merge may look at it.
Crates from other systems go through :mod:`._foreign`.
"""

from __future__ import annotations

import dataclasses
import json
import posixpath
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Integer, Table

from lwfm.errors import BundleError
from lwfm.model import JobDefn, State, Trigger, TriggerStatus, advance, iso, parse_time
from lwfm.secrets import redacted_defn
from lwfm.store import t

from ._common import METADATA, from_urn, is_uuid
from ._safety import _no_constants, check_name
from ._triples import check_node_rows

_SHA = frozenset("0123456789abcdef")
# What lwfm.model.iso writes; anything else is parsed and normalised.
_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?\+00:00")
_BOUND = {"int": 2 ** 63, "int32": 2 ** 31}
_STR, _JSON = "str", "json"   # column kinds (compared by identity in check_row)


@dataclass
class Payload:
    data_id: str
    member: str      # zip entry name
    sha256: str
    size: int


@dataclass
class Incoming:
    """What a bundle says, as rows ready to merge."""

    origin: str
    foreign: bool
    info: dict[str, Any] = field(default_factory=dict)
    workflows: list[dict[str, Any]] = field(default_factory=list)
    jobs: list[dict[str, Any]] = field(default_factory=list)
    statuses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    data: list[dict[str, Any]] = field(default_factory=list)
    triggers: list[dict[str, Any]] = field(default_factory=list)
    payload: list[Payload] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)
    crate_nodes: list[dict[str, str]] = field(default_factory=list)   # a crate's own triples


def _checker(table: Table, skip: tuple[str, ...] = ()) -> list[tuple[str, str, int | None, bool]]:
    out = []
    for col in table.columns:
        if col.name in skip:
            continue
        ty = col.type
        if isinstance(ty, JSON):
            kind = _JSON
        elif isinstance(ty, Integer):
            kind = "int" if isinstance(ty, BigInteger) else "int32"
        else:
            kind = _STR
        length = getattr(ty, "length", None)
        out.append((col.name, kind, length, bool(col.nullable) and not col.primary_key))
    return out


_COLS = {"workflow": _checker(t.workflows), "job": _checker(t.jobs), "data": _checker(t.data),
         "trigger": _checker(t.triggers), "status": _checker(t.statuses, ("seq", "job_id"))}
_NAMES = {kind: frozenset(c[0] for c in cols) for kind, cols in _COLS.items()}
# Columns that name another record by its uuid: anything else would be stored, then
# projected as an IRI that names no record (or another one).
_REFS = {"workflow": ("instance_id",),
         "job": ("parent_id", "originator_id", "workflow_id", "triggered_by", "instance_id"),
         "data": ("job_id", "workflow_id", "derived_from", "instance_id"),
         "trigger": ("job_id", "fired_by"), "status": ()}
_TIMES = {"workflow": ("created",), "job": ("created", "started", "ended"), "data": ("time",),
          "trigger": ("fired_at",), "status": ("time",)}


class _Seen:
    """Strings already found well-formed by ``test`` (uuids, ISO times): rows repeat them
    (their workflow, instance and job ids; the times of a run), and a set lookup costs a
    fraction of the check. Bounded: it forgets everything when full."""

    def __init__(self, test: Any, cap: int = 1 << 16):
        self.test, self.cap = test, cap
        self.ok: set[str] = set()

    def __call__(self, v: Any) -> bool:
        if type(v) is str and v in self.ok:
            return True
        if not self.test(v):
            return False
        if type(v) is str:
            if len(self.ok) >= self.cap:
                self.ok.clear()
            self.ok.add(v)
        return True


def _canon_time(v: Any) -> bool:
    """What lwfm.model.iso writes, a real calendar date (the pattern alone cannot tell)."""
    if not isinstance(v, str) or not _ISO.fullmatch(v):
        return False
    try:
        datetime.fromisoformat(v)
    except ValueError:
        return False
    return True


_good_uuid = _Seen(is_uuid)
_good_time = _Seen(_canon_time)
def check_row(kind: str, row: Any, where: str) -> dict[str, Any]:
    """The row if every column has its schema type; times normalised to ISO UTC."""
    cols = _COLS[kind]
    if not isinstance(row, dict):
        raise BundleError(f"{where}: {kind} record does not have the {kind} columns")
    if not _NAMES[kind].issuperset(row):
        unknown = row.keys() - _NAMES[kind]
        raise BundleError(f"{where}: {kind} record has unknown columns {sorted(unknown)[:5]}")
    if len(row) != len(cols):
        row = dict(row)  # some nullable columns are absent: fill them below, not in the caller's dict
        for name, _, _, nullable in cols:
            if name not in row:
                if not nullable:  # a nullable column newer than the bundle is simply absent
                    raise BundleError(f"{where}: {kind} record lacks {name!r}")
                row[name] = None
    for name, ty, length, nullable in cols:
        v = row[name]
        if v is None:
            if not nullable:
                raise BundleError(f"{where}: {kind} record has no {name!r}")
            continue
        if ty is _STR:
            ok = isinstance(v, str) and (length is None or len(v) <= length)
        elif ty is _JSON:
            ok = isinstance(v, dict)
        else:
            ok = isinstance(v, int) and not isinstance(v, bool) and -_BOUND[ty] <= v < _BOUND[ty]
        if not ok:
            raise BundleError(f"{where}: {kind} record field {name!r} has a wrong type or length")
    for name in _REFS[kind]:
        v = row[name]
        if v is not None and not _good_uuid(v):
            raise BundleError(f"{where}: {kind} record field {name!r} is not a uuid")
    for name in _TIMES[kind]:
        v = row[name]
        if v is None or _good_time(v):
            continue
        try:
            row[name] = iso(parse_time(v))
        except (ValueError, TypeError, OverflowError):
            raise BundleError(f"{where}: {kind} record {name!r} is not an ISO time") from None
    return row


_STRICT = json.JSONDecoder(parse_constant=_no_constants)


def _record(e: dict[str, Any], where: str) -> Any:
    rec = e.get("lwfm:record")
    if not isinstance(rec, str):
        raise BundleError(f"{where}: lwfm entity without an lwfm:record string")
    try:   # strict, as the document around it: no NaN or Infinity (see strict_json)
        return _STRICT.decode(rec)
    except (ValueError, RecursionError):
        raise BundleError(f"{where}: lwfm:record is not valid JSON") from None


def _types(e: dict[str, Any]) -> set[str]:
    ty = e.get("@type")
    return {ty} if isinstance(ty, str) else set(ty or [])


def entities(doc: dict[str, Any], where: str) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Entities by @id and the root data entity (found via the metadata descriptor)."""
    by_id = {e["@id"]: e for e in doc["@graph"]}
    desc = by_id.get(METADATA) or next((e for i, e in by_id.items() if i.endswith("/" + METADATA)), None)
    about = desc.get("about") if desc else None
    root_id = about.get("@id") if isinstance(about, dict) else None
    if not isinstance(root_id, str) or root_id not in by_id:
        raise BundleError(f"{where}: the metadata descriptor does not point (about) to a root "
                          "data entity in @graph; not an RO-Crate")
    return by_id, by_id[root_id]


def lwfm_origin(root: dict[str, Any], where: str) -> Incoming:
    """An empty Incoming for an lwfm bundle, from its root data entity."""
    if root.get("lwfm:bundleFormat") != "1":
        raise BundleError(f"{where}: unsupported lwfm bundle format "
                          f"{root.get('lwfm:bundleFormat')!r} (this lwfm reads format 1)")
    inst = root.get("lwfm:exportingInstance")
    origin = from_urn(inst.get("@id") if isinstance(inst, dict) else None)
    if origin is None:
        raise BundleError(f"{where}: root entity lacks a valid lwfm:exportingInstance")
    return Incoming(origin=origin, foreign=False, info={
        "selection": root.get("lwfm:selection"), "lwfm_version": root.get("lwfm:lwfmVersion"),
        "export_time": root.get("lwfm:exportTime")})


class LwfmConverter:
    """Entity -> validated rows, one at a time (a stream of 100k jobs never sits in memory)."""

    def __init__(self, head: Incoming, where: str, members: set[str]):
        self.head, self.where, self.members = head, where, members
        self.batch = self._fresh()
        self.data_ids: set[str] = set()
        self.payload: list[Payload] = []
        self.size = 0

    def _fresh(self) -> Incoming:
        return Incoming(origin=self.head.origin, foreign=False, info=self.head.info)

    def take(self) -> Incoming:
        out, self.batch, self.size = self.batch, self._fresh(), 0
        return out

    def add(self, e: dict[str, Any]) -> None:
        eid = e["@id"]
        types = _types(e)
        inc = self.batch
        w = f"{self.where}: entity {eid[:100]}"
        if "lwfm:crateTriples" in e:   # a foreign crate's node, carried whole (_triples)
            rows = check_node_rows(eid, e["lwfm:crateTriples"], w)
            inc.crate_nodes += rows
            self.size += len(rows)
            if "lwfm:record" not in e:
                return
        if "lwfm:Workflow" in types:
            row = check_row("workflow", _record(e, w), w)
            _same(row["id"], from_urn(eid), w)
            inc.workflows.append(row)
        elif "CreateAction" in types and "lwfm:record" in e:
            rec = _record(e, w)
            if not isinstance(rec, dict) or set(rec) != {"job", "statuses"} or \
                    not isinstance(rec["statuses"], list):
                raise BundleError(f"{w}: job record is malformed")
            row = check_row("job", rec["job"], w)
            _same(row["id"], from_urn(eid), w)
            try:
                if row["state"] is not None:
                    State(row["state"])
                defn = row["defn"]
                if not set(defn) <= _DEFN_FIELDS:
                    raise ValueError(f"unknown defn field(s) {sorted(set(defn) - _DEFN_FIELDS)}")
                JobDefn(**defn)  # __post_init__ validates entry, kind and args
                row["defn"] = redacted_defn(defn)   # a secret in a bundle stays out of the store
            except (ValueError, TypeError, KeyError, AttributeError) as ex:
                raise BundleError(f"{w}: job record is malformed ({ex})") from None
            sts = [check_row("status", s, w) for s in rec["statuses"]]
            for s in sts:
                if s["state"] not in _STATES:
                    raise BundleError(f"{w}: status with unknown state {s['state']!r}")
            _check_history(row["state"], [s["state"] for s in sts], w)
            inc.jobs.append(row)
            inc.statuses[row["id"]] = sts
            self.size += len(sts)
        elif "lwfm:Trigger" in types:
            inc.triggers.append(_trigger(e, eid, w))
        elif "File" in types and "lwfm:record" in e:  # lwfm:DataObject
            row = check_row("data", _record(e, w), w)
            _same(row["id"], from_urn(eid), w)
            if row["direction"] not in ("put", "get"):
                raise BundleError(f"{w}: data direction must be put or get")
            sha = row["sha256"]
            if sha is not None and (len(sha) != 64 or not set(sha) <= _SHA):
                raise BundleError(f"{w}: data sha256 is not a hex digest (64 of 0-9a-f)")
            inc.data.append(row)
            self.data_ids.add(row["id"])
        elif "File" in types and "lwfm:payloadOf" in e:
            self.payload.append(_payload(e, w, self.members))
        else:
            return
        self.size += 1

    def finish(self) -> list[Payload]:
        for p in self.payload:
            if p.data_id not in self.data_ids:
                raise BundleError(f"{self.where}: payload {p.member} belongs to no data record")
        return self.payload


def _check_history(state: str | None, history: list[str], where: str) -> None:
    """The job's state must be what its history (in order) comes to, as the store keeps
    it, or a terminal state the history reports (a conflict an import resolved in favour
    of a bundle: both end states are kept, the bundle's is the state)."""
    if not history:
        return
    folded: State | None = None
    for s in history:
        folded = advance(folded, State(s))
    if state == (folded and folded.value):
        return
    if state is not None and State(state).terminal and state in history:
        return
    raise BundleError(f"{where}: job record contradicts its own history: state {state} "
                      f"after {' -> '.join(history[-6:])}")


_STATES = frozenset(s.value for s in State)
_DEFN_FIELDS = frozenset(f.name for f in dataclasses.fields(JobDefn))


def _trigger(e: dict[str, Any], eid: str, w: str) -> dict[str, Any]:
    rec = _record(e, w)
    watch = rec.pop("watch", None) if isinstance(rec, dict) else None
    row = check_row("trigger", rec, w)
    _same(row["id"], from_urn(eid), w)
    if not isinstance(watch, list) or not all(is_uuid(j) for j in watch):
        raise BundleError(f"{w}: trigger record has a malformed watch list")
    try:
        tr = Trigger.from_dict(row["body"])
        TriggerStatus(row["status"])
    except (ValueError, TypeError, KeyError, AttributeError) as ex:
        raise BundleError(f"{w}: trigger record is malformed ({ex})") from None
    if tr.id != row["id"] or tr.kind.value != row["kind"] or tr.job_id != row["job_id"]:
        raise BundleError(f"{w}: trigger record contradicts itself")
    if "defn" in row["body"]:   # a secret in a bundle stays out of the store
        row["body"] = {**row["body"], "defn": redacted_defn(row["body"]["defn"])}
    row["watch"] = watch
    return row


def read_lwfm(by_id: dict[str, dict[str, Any]], root: dict[str, Any], where: str,
              members: set[str]) -> Incoming:
    """Rows of a whole (already parsed) lwfm bundle, every record validated."""
    conv = LwfmConverter(lwfm_origin(root, where), where, members)
    for e in by_id.values():
        conv.add(e)
    inc = conv.take()
    inc.payload = conv.finish()
    return inc


def _same(row_id: str, uid: str | None, where: str) -> None:
    if uid is None or row_id != uid:
        raise BundleError(f"{where}: record id does not match the entity's urn:uuid @id")


def _payload(e: dict[str, Any], where: str, members: set[str]) -> Payload:
    name = e["@id"]
    of = e.get("lwfm:payloadOf")
    data_id = from_urn(of.get("@id") if isinstance(of, dict) else None)
    sha = e.get("sha256")
    size = e.get("contentSize")
    if check_name(name) or posixpath.normpath(name) != name or not name.startswith("data/"):
        raise BundleError(f"{where}: payload path is not a plain data/... path")
    if data_id is None or not isinstance(sha, str) or len(sha) != 64 or not set(sha) <= _SHA:
        raise BundleError(f"{where}: payload lacks its data id or a sha256")
    try:
        n = int(size)
    except (TypeError, ValueError):
        raise BundleError(f"{where}: payload contentSize is not an integer") from None
    if name not in members:
        raise BundleError(f"{where}: payload file {name} is listed but not in the bundle")
    return Payload(data_id, name, sha, n)
