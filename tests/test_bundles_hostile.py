"""Hostile and malformed bundles: a clear BundleError, and the store exactly as it was."""

from __future__ import annotations

import itertools
import json
import stat
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lwfm.bundles import Limits, export_bundle, import_bundle

from lwfm.errors import BundleError
from lwfm.provenance import ProvenanceGraph, check_consistency
from tests._bundle_threads import Home, build, snapshot
from tests._store_invariants import problems

META = "ro-crate-metadata.json"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    local, remote = Home.open(tmp / "local"), Home.open(tmp / "remote")
    th = build(local, remote, tmp)
    good = tmp / "good.zip"
    export_bundle(remote.store, remote.config, good, workflow_id=th.workflow, with_data=True)
    yield local, remote, good, tmp
    g = _GRAPHS.pop(str(local.config.home), None)
    if g is not None:
        g.close()
    local.store.close()
    remote.store.close()


def _entries(path: Path) -> list[tuple[zipfile.ZipInfo, bytes]]:
    with zipfile.ZipFile(path) as z:
        return [(i, z.read(i)) for i in z.infolist()]


def write_zip(path: Path, entries, compression=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as z:
        for info, data in entries:
            if isinstance(info, str):
                info = zipfile.ZipInfo(info)
                info.external_attr = 0o100644 << 16
            info.compress_type = compression
            z.writestr(info, data)
    return path


def with_meta(env, mutate, name="m.zip", compression=zipfile.ZIP_DEFLATED) -> Path:
    """The good bundle with its metadata document changed by ``mutate(doc)``."""
    _, _, good, tmp = env
    out = []
    for info, data in _entries(good):
        if info.filename == META:
            doc = json.loads(data)
            res = mutate(doc)
            data = res if isinstance(res, bytes) else json.dumps(doc if res is None else res).encode()
        out.append((info, data))
    return write_zip(tmp / name, out, compression)


def refused(env, path: Path, match: str, **kw) -> None:
    local = env[0]
    before = snapshot(local.store)
    files = sorted(local.config.data_dir.rglob("*")) if local.config.data_dir.exists() else []
    with pytest.raises(BundleError, match=match):
        import_bundle(local.store, local.config, path, **kw)
    assert snapshot(local.store) == before
    now = sorted(local.config.data_dir.rglob("*")) if local.config.data_dir.exists() else []
    assert now == files


def _entity(doc, pred):
    return next(e for e in doc["@graph"] if pred(e))


def test_zip_slip_and_absolute_paths(env):
    tmp = env[3]
    good_meta = dict(_entries(env[2]))
    meta = next(d for i, d in good_meta.items() if i.filename == META)
    for i, bad in enumerate(["../evil.txt", "data/../../evil", "/etc/cron.d/evil", "C:/evil",
                             "a\\..\\b"]):
        refused(env, write_zip(tmp / f"slip{i}.zip", [(META, meta), (bad, b"x")]),
                "absolute|escapes|backslash")


@pytest.mark.parametrize("mode,what", [(stat.S_IFLNK | 0o777, "symlink"),
                                       (stat.S_IFCHR | 0o600, "device"),
                                       (stat.S_IFIFO | 0o600, "device")])
def test_symlink_and_device_entries(env, mode, what):
    info = zipfile.ZipInfo("data/link")
    info.create_system = 3
    info.external_attr = mode << 16
    meta = next(d for i, d in _entries(env[2]) if i.filename == META)
    refused(env, write_zip(env[3] / f"{what}.zip", [(META, meta), (info, b"/etc/passwd")]), what)


def test_zip_bomb_ratio_entries_and_total_size(env):
    tmp = env[3]
    meta = next(d for i, d in _entries(env[2]) if i.filename == META)
    refused(env, write_zip(tmp / "bomb.zip", [(META, meta), ("data/zeros", b"\0" * (30 << 20))]),
            "zip bomb")
    many = write_zip(tmp / "many.zip", [(META, meta)] + [(f"data/f{i}", b"x") for i in range(30)])
    refused(env, many, "entries", limits=Limits(max_entries=20))
    refused(env, env[2], "uncompressed size", limits=Limits(max_total_bytes=1000))


def test_not_a_zip_missing_metadata_and_duplicates(env):
    tmp = env[3]
    junk = tmp / "junk.zip"
    junk.write_bytes(b"PK\x03\x04garbage" * 10)
    refused(env, junk, "not a zip")
    refused(env, write_zip(tmp / "nometa.zip", [("other.json", b"{}")]), "no ro-crate-metadata")
    meta = next(d for i, d in _entries(env[2]) if i.filename == META)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dup = write_zip(tmp / "dup.zip", [(META, meta), (META, meta)])
    refused(env, dup, "twice")


@pytest.mark.parametrize("mutate,match", [
    (lambda d: b"{not json", "not valid JSON"),
    (lambda d: b"\xff\xfe" + b"x" * 10, "not valid JSON"),
    (lambda d: b"[" * 100_000 + b"]" * 100_000, "not valid JSON|JSON object|nests"),
    (lambda d: [1, 2], "JSON object"),
    (lambda d: {"@context": d["@context"]}, "@graph"),
    (lambda d: {**d, "@graph": [1]}, "not a JSON object"),
    (lambda d: {**d, "@graph": d["@graph"] + [{"name": "no id"}]}, "@id"),
    (lambda d: {**d, "@graph": d["@graph"] + [d["@graph"][-1]]}, "twice"),
    (lambda d: {**d, "@context": "https://evil.example/context"}, "remote or unknown @context"),
    (lambda d: {**d, "@context": ["https://w3id.org/ro/crate/1.1/context",
                                  "http://localhost:8080/ctx.jsonld"]}, "remote or unknown"),
    (lambda d: {**d, "@context": [d["@context"][0], {"@import": "https://evil.example/c"}]},
     "keyword"),
    (lambda d: {**d, "@context": [d["@context"][0], {"name": {"@context": {}}}]}, "plain term"),
    (lambda d: {k: v for k, v in d.items() if k != "@context"}, "no @context"),
    (lambda d: {**d, "@graph": d["@graph"] + [{"@id": "#x", "name": {"@value": "a", "@id": "#y"}}]},
     "not valid JSON-LD"),
    (lambda d: {**d, "@context": [d["@context"][0], {"odd": {"@id": "http://x.org/odd",
                                                             "@type": "@nonsense"}}]},
     "not valid JSON-LD"),
    (lambda d: {**d, "@graph": [{**e, "@type": 5} for e in d["@graph"]]}, "@type"),
    (lambda d: {**d, "@graph": [e for e in d["@graph"] if e["@id"] != "ro-crate-metadata.json"]},
     "descriptor"),
])
def test_malformed_json_and_json_ld(env, mutate, match):
    refused(env, with_meta(env, mutate), match)


def test_oversized_literal(env):
    def big(d):
        _entity(d, lambda e: e["@id"] == "./")["description"] = "x" * (2 << 20)
    refused(env, with_meta(env, big, compression=zipfile.ZIP_STORED), "literal")
    refused(env, env[2], "literal", limits=Limits(max_literal=100))


def _job_record(change):
    """A metadata mutation: ``change(record)`` on the first job's lwfm:record."""
    def mutate(d):
        e = _entity(d, lambda e: "lwfm:Job" in e.get("@type", []))
        rec = json.loads(e["lwfm:record"])
        change(rec)
        e["lwfm:record"] = json.dumps(rec)
    return mutate


def test_tampered_records(env):
    refused(env, with_meta(env, _job_record(lambda r: r["job"].update(exit_code="zero"))),
            "exit_code")
    refused(env, with_meta(env, _job_record(
        lambda r: r["job"].update(id="11111111-1111-4111-8111-111111111111"))), "does not match")
    refused(env, with_meta(env, _job_record(lambda r: r["statuses"][0].update(state="EXPLODED"))),
            "EXPLODED")

    def bad_format(d):
        _entity(d, lambda e: e["@id"] == "./")["lwfm:bundleFormat"] = "99"
    refused(env, with_meta(env, bad_format), "format")


def test_checksum_mismatch_of_payload(env):
    out = []
    for info, data in _entries(env[2]):
        if info.filename.startswith("data/"):
            data = data.replace(b"result", b"RESULT")
        out.append((info, data))
    refused(env, write_zip(env[3] / "tampered.zip", out), "checksum mismatch")

    def lie(d):
        _entity(d, lambda e: e["@id"].startswith("data/"))["sha256"] = "a" * 64
    refused(env, with_meta(env, lie), "checksum mismatch")

    def missing(d):
        _entity(d, lambda e: e["@id"].startswith("data/"))["@id"] = "data/x/not-there"
    refused(env, with_meta(env, missing), "not in the bundle")


def _lines_edit(env, name, edit) -> Path:
    out = []
    for info, data in _entries(env[2]):
        if info.filename == META:
            lines = data.split(b"\n")
            data = b"\n".join(edit(lines))
        out.append((info, data))
    return write_zip(env[3] / name, out)


def _tamper_line(lines):
    i = next(i for i, ln in enumerate(lines) if b'"CreateAction"' in ln)
    import re
    lines[i], n = re.subn(rb'\\"exit_code\\":-?\d+', rb'\\"exit_code\\":\\"zero\\"', lines[i], count=1)
    assert n == 1
    return lines


@pytest.mark.parametrize("edit,match", [
    (lambda ls: ls[:3] + [ls[3] + ls[4]] + ls[5:], "line|JSON"),             # two entities, one line
    (lambda ls: ls[:-3] + [ls[-3] + b","] + ls[-2:], "trailing comma"),
    (lambda ls: ls + [b"{}"], "after the document"),
    (lambda ls: ls[:-2], "truncated"),
    (lambda ls: ls[:4] + [b"{not json},"] + ls[4:], "not valid JSON"),
    (lambda ls: ls[:4] + [ls[4]] + ls[4:], "twice"),
    (_tamper_line, "exit_code"),
])
def test_streamed_reader_is_as_strict(env, monkeypatch, edit, match):
    from lwfm.bundles import _importer
    monkeypatch.setattr(_importer, "STREAM_MIN_BYTES", 0)
    monkeypatch.setattr(_importer, "BATCH", 1)
    refused(env, _lines_edit(env, "lines.zip", edit), match)


def test_streamed_reader_that_dies_changes_nothing(env, monkeypatch, tmp_path):
    """The child that reads a large bundle sends one good batch, then crashes: the
    import is refused with the child's own words and the store is as it was."""
    import sys
    import types

    from lwfm.bundles import _importer, _stream
    monkeypatch.setattr(_importer, "STREAM_MIN_BYTES", 0)
    monkeypatch.setattr(_importer, "BATCH", 1)
    fake = tmp_path / "reader.py"
    fake.write_text(
        "import subprocess, sys\n"
        "p = subprocess.Popen([sys.argv[1]] + sys.argv[2:], stdin=sys.stdin,\n"
        "                     stdout=subprocess.PIPE)\n"
        "sys.stdout.buffer.write(p.stdout.readline()); sys.stdout.flush()\n"
        "p.kill()\n"
        "sys.exit('reader crashed on purpose')\n")
    runner = tmp_path / "python"
    runner.write_text(f"#!/bin/sh\nexec {sys.executable} {fake} {sys.executable} \"$@\"\n")
    runner.chmod(0o755)
    monkeypatch.setattr(_stream, "sys", types.SimpleNamespace(executable=str(runner)))
    refused(env, env[2], "bundle reader failed.*crashed on purpose")


def test_bundle_from_this_very_instance(env):
    local, _, _, tmp = env
    own = tmp / "own.zip"
    export_bundle(local.store, local.config, own, all=True)
    refused(env, own, "this very instance")


# -- fuzzing: only ever BundleError, and a refused import changes nothing -------------------

def _files(local) -> list[tuple[str, int]]:
    d = local.config.data_dir
    return sorted((str(p), p.stat().st_size) for p in d.rglob("*")) if d.exists() else []


_GRAPHS: dict[str, ProvenanceGraph] = {}


def _graph(local) -> ProvenanceGraph:
    """One graph of the local home for the whole module (opening one per example is slow)."""
    key = str(local.config.home)
    if key not in _GRAPHS:
        _GRAPHS[key] = ProvenanceGraph(local.config, local.store)
    return _GRAPHS[key]


def _attempt(env, path: Path, local: Home | None = None) -> None:
    """Import ``path``: refused, it leaves the store row-for-row and the data directory
    file-for-file as they were; accepted, every store invariant still holds, the
    report's counts are the rows that appeared, the graph syncs and matches SQL, and
    importing the same file again changes nothing."""
    local = local or env[0]
    before, files = snapshot(local.store), _files(local)
    try:
        rep = import_bundle(local.store, local.config, path, dry_run=False, on_conflict="keep")
    except BundleError:
        assert snapshot(local.store) == before
        assert _files(local) == files
        return
    after = snapshot(local.store)
    assert problems(local.store) == []
    if rep.already_imported is None:
        for kind, table in (("workflow", "workflows"), ("job", "jobs"), ("status", "statuses"),
                            ("data", "data"), ("trigger", "triggers")):
            assert len(after[table]) - len(before[table]) == rep.added[kind], kind
    else:
        assert after == before
    g = _graph(local)
    g.sync()
    assert check_consistency(g) == []
    again = import_bundle(local.store, local.config, path, dry_run=False, on_conflict="keep")
    assert not again.changed
    assert snapshot(local.store) == after


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) |
                     st.text(max_size=20),
                     lambda kids: st.lists(kids, max_size=4) |
                     st.dictionaries(st.sampled_from(["@id", "@type", "@graph", "@context", "about",
                                                      "name", "object", "result", "instrument",
                                                      "lwfm:record", "conformsTo", "x"]) |
                                     st.text(max_size=5), kids, max_size=5), max_leaves=30)

FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@FUZZ
@given(data=st.binary(max_size=2000))
def test_fuzz_random_bytes(env, data):
    p = env[3] / "fuzz.bin"
    p.write_bytes(data)
    _attempt(env, p)


@FUZZ
@given(doc=_json)
def test_fuzz_random_json_metadata(env, doc):
    _attempt(env, write_zip(env[3] / "fuzz.zip", [(META, json.dumps(doc).encode())]))


def _set_at(graph, path, value) -> None:
    """Walk ``graph`` by ``path`` (indices modulo the size, dict keys sorted) as far as
    non-empty containers go, then set the last step's item there to ``value``."""
    node = graph
    for i in path[:-1]:
        items = node if isinstance(node, list) else list(node.values())
        nxt = items[i % len(items)] if items else None
        if not isinstance(nxt, (dict, list)) or not nxt:
            break
        node = nxt
    if isinstance(node, list) and node:
        node[path[-1] % len(node)] = value
    elif isinstance(node, dict) and node:
        node[sorted(node)[path[-1] % len(node)]] = value


@FUZZ
@given(path=st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=3), value=_json)
def test_fuzz_mutated_real_bundle(env, path, value):
    _attempt(env, with_meta(env, lambda d: _set_at(d["@graph"], path, value), "fuzzmut.zip"))


@FUZZ
@given(flip=st.integers(min_value=0, max_value=10**9), byte=st.integers(min_value=0, max_value=255))
def test_fuzz_corrupted_zip_bytes(env, flip, byte):
    raw = bytearray(env[2].read_bytes())
    raw[flip % len(raw)] = byte
    p = env[3] / "flip.zip"
    p.write_bytes(bytes(raw))
    _attempt(env, p)


_PLAUSIBLE = [None, 0, 1, -15, "", "x", "COMPLETE", "FAILED", "RUNNING", "READY", "INFO",
              "CANCELLED", "PENDING", "UNKNOWN", "put", "get", "2026-01-01T00:00:00+00:00",
              "1999-12-31T23:59:59Z", "not-a-time", "11111111-1111-4111-8111-111111111111",
              {"MYSQL_PWD": "s3cr3t-fuzz", "PLAIN": "ok"}, {"GITHUB_PAT": "s3cr3t-fuzz"}, [], {},
              ["a"], {"k": "v"}, "k" * 300, True, 2**63]


@FUZZ
@given(data=st.data())
def test_fuzz_mutated_records(env, data):
    """Mutations inside the lwfm:record of a job, status, data or trigger, with values a
    record could plausibly hold (states, times, ids of other records, unknown ids, secrets):
    the ones the importer accepts are the ones that must not break the store."""
    def mutate(d):
        ents = [e for e in d["@graph"] if "lwfm:record" in e]
        e = ents[data.draw(st.integers(0, len(ents) - 1), label="entity")]
        rec = json.loads(e["lwfm:record"])
        ids = [str(x["@id"])[9:] for x in d["@graph"] if str(x["@id"]).startswith("urn:uuid:")]
        node, key = rec, None
        depth = data.draw(st.integers(1, 4), label="depth")
        for i in range(depth):
            keys = sorted(node) if isinstance(node, dict) else list(range(len(node)))
            if not keys:
                return
            key = data.draw(st.sampled_from(keys), label="key")
            child = node[key]
            if i == depth - 1 or not isinstance(child, (dict, list)) or not child:
                break
            node = child
        node[key] = data.draw(st.sampled_from(_PLAUSIBLE + ids), label="value")
        e["lwfm:record"] = json.dumps(rec)
    fresh = Home.open(env[3] / "fresh" / str(next(_FRESH)))   # the insert path, every time
    try:
        _attempt(env, with_meta(env, mutate, "fuzzrec.zip"), fresh)
    finally:
        g = _GRAPHS.pop(str(fresh.config.home), None)
        if g is not None:
            g.close()
        fresh.store.close()


_FRESH = itertools.count()


_CWL = Path(__file__).parent / "fixtures" / "crates" / "cwl_provenance" / META


@FUZZ
@given(path=st.lists(st.integers(min_value=0, max_value=60), min_size=1, max_size=3), value=_json)
def test_fuzz_mutated_foreign_crate(env, path, value):
    doc = json.loads(_CWL.read_text())
    _set_at(doc["@graph"], path, value)
    _attempt(env, write_zip(env[3] / "fuzzforeign.zip", [(META, json.dumps(doc).encode())]))


def test_streamed_reader_caps_literals(env, monkeypatch):
    from lwfm.bundles import _importer
    monkeypatch.setattr(_importer, "STREAM_MIN_BYTES", 0)
    refused(env, env[2], "literal", limits=Limits(max_literal=100))


def test_metadata_the_store_refuses_is_a_bundle_error(env):
    def bad_key(d):
        e = _entity(d, lambda e: "lwfm:DataObject" in e.get("@type", []))
        rec = json.loads(e["lwfm:record"])
        rec["metadata"]["k" * 300] = "v"
        e["lwfm:record"] = json.dumps(rec)
    refused(env, with_meta(env, bad_key), "255")


# -- regressions found by the record fuzzer ----------------------------------------------

def _data_record(change):
    def mutate(d):
        e = _entity(d, lambda e: "lwfm:DataObject" in e.get("@type", []) and
                    json.loads(e["lwfm:record"])["direction"] == "get")
        rec = json.loads(e["lwfm:record"])
        change(rec)
        e["lwfm:record"] = json.dumps(rec)
    return mutate


@pytest.mark.parametrize("mutate", [
    _data_record(lambda r: r.update(derived_from="2026-01-01T00:00:00+00:00")),
    _data_record(lambda r: r.update(job_id="not a uuid")),
    _job_record(lambda r: r["job"].update(parent_id="<urn:x> <urn:y>")),
    _job_record(lambda r: r["job"].update(workflow_id="11111111-1111-4111-8111-11111111111X")),
    _job_record(lambda r: r["job"].update(instance_id="x")),
])
def test_a_reference_that_is_not_a_uuid_is_refused(env, mutate):
    """It would be stored, then projected as an IRI that is not the record it names."""
    refused(env, with_meta(env, mutate, "badref.zip"), "not a uuid")


def test_a_job_whose_state_contradicts_its_history_is_refused(env, tmp_path):
    """A job record that says RUNNING over a history that reached COMPLETE (or COMPLETE
    over a history that never ended) is not a state lwfm could have recorded."""
    def first_job(change):
        def mutate(d):
            e = _entity(d, lambda e: "lwfm:Job" in e.get("@type", []) and
                        json.loads(e["lwfm:record"])["job"]["state"] == "COMPLETE")
            rec = json.loads(e["lwfm:record"])
            change(rec)
            e["lwfm:record"] = json.dumps(rec)
        return mutate
    fresh = Home.open(tmp_path / "fresh")
    for change in (lambda r: r["job"].update(state="RUNNING"),
                   lambda r: r["statuses"][-1].update(state="RUNNING"),
                   lambda r: r.update(statuses=r["statuses"][:1])):
        before = snapshot(fresh.store)
        with pytest.raises(BundleError, match="contradicts its own history"):
            import_bundle(fresh.store, fresh.config, with_meta(env, first_job(change), "st.zip"))
        assert snapshot(fresh.store) == before
    fresh.store.close()


def test_a_data_record_whose_sha256_is_not_a_digest_is_refused(env):
    for bad in ("", "A" * 64, "a" * 63, "g" * 64):
        refused(env, with_meta(env, _data_record(lambda r: r.update(sha256=bad)), "sha.zip"),
                "sha256")


def test_an_empty_native_id_is_projected_as_stored(env, tmp_path):
    """The graph says what SQL says, even for an empty (not absent) native id."""
    fresh = Home.open(tmp_path / "fresh")
    import_bundle(fresh.store, fresh.config,
                  with_meta(env, _job_record(lambda r: r["job"].update(native_id="")), "n.zip"))
    with ProvenanceGraph(fresh.config, fresh.store) as g:
        g.sync()
        assert check_consistency(g) == []
    fresh.store.close()
