"""Bundles between two real lwfm homes: export remote, import local, threads join."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from lwfm.bundles import _importer, _merge, export_bundle, import_bundle, list_bundles

from lwfm.errors import BundleError
from lwfm.model import DataObject, JobStatus, State
from tests._bundle_threads import Home, build, count, snapshot, t


@pytest.fixture(params=["whole", "streamed", "deferred"])
def homes(request, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Remote and local homes with a thread; imports read the metadata whole or streamed
    (``deferred``: streamed, and every table the import fills with more rows than it has
    drops its indexes, to build them at the end: the schema must come back as it was)."""
    from lwfm.store.sql import DeferredIndexes
    monkeypatch.delenv("LWFM_STORE_URL", raising=False)
    if request.param in ("streamed", "deferred"):
        monkeypatch.setattr(_importer, "STREAM_MIN_BYTES", 0)
        monkeypatch.setattr(_importer, "BATCH", 2)
    if request.param == "deferred":
        monkeypatch.setattr(DeferredIndexes, "MIN_ROWS", 1)
    local, remote = Home.open(tmp_path / "local"), Home.open(tmp_path / "remote")
    th = build(local, remote, tmp_path)
    yield local, remote, th
    fresh = Home.open(tmp_path / "fresh")
    try:
        assert _schema(local.store) == _schema(fresh.store), "an index did not come back"
    finally:
        fresh.store.close()
        local.store.close()
        remote.store.close()


def _schema(store) -> list[tuple]:
    from sqlalchemy import text
    with store.read() as c:
        return sorted(tuple(r) for r in c.execute(text(
            "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_stat%'")))


def _export(remote: Home, tmp: Path, name="thread.zip", **sel) -> Path:
    sel = sel or {"job": None}
    out = tmp / name
    export_bundle(remote.store, remote.config, out, **sel)
    return out


def _export_crate_dir(remote: Home, tmp: Path, workflow_id: str) -> tuple[Path, Path]:
    """Export a workflow's thread with its data and extract it: (bundle, crate dir)."""
    bundle = tmp / "b.zip"
    export_bundle(remote.store, remote.config, bundle, workflow_id=workflow_id, with_data=True)
    d = tmp / "crate"
    zipfile.ZipFile(bundle).extractall(d)
    return bundle, d


def _meta(path: Path) -> dict:
    with zipfile.ZipFile(path) as z:
        return json.loads(z.read("ro-crate-metadata.json"))


def test_round_trip_joins_the_local_thread(homes, tmp_path):
    local, remote, th = homes
    bundle = _export(remote, tmp_path, workflow_id=th.workflow)
    rep = import_bundle(local.store, local.config, bundle)
    assert rep.origin_instance == remote.store.instance_id and not rep.foreign
    assert rep.added["job"] == 3 and rep.updated["job"] == 1  # 3 steps new, the launched job joined
    # The job launched from here is ONE record: local facts kept, remote facts merged in.
    joined = local.store.get_job(th.remote_root)
    assert joined.state is State.COMPLETE and joined.exit_code == 0
    assert joined.context.site == "lab" and joined.context.native_id == "4242"
    assert joined.instance_id == local.store.instance_id
    states = [s.state for s in local.store.history(th.remote_root)]
    assert states.count(State.COMPLETE) == 1 and states[:3] == [State.READY, State.PENDING, State.RUNNING]
    # Remote-only records answer exactly as on the origin.
    for jid in th.steps:
        assert local.store.get_job(jid).to_dict() == remote.store.get_job(jid).to_dict()
        assert [s.to_dict() for s in local.store.history(jid)] == \
               [s.to_dict() for s in remote.store.history(jid)]
    for pattern in ({"role": "output"}, {"step": 1}, {"role": "in*"}, {"tags": ["sim", "v1"]}):
        mine = sorted(d.to_dict()["id"] for d in local.store.find_data(pattern))
        assert mine == sorted(d.to_dict()["id"] for d in remote.store.find_data(pattern))
        assert mine
    d = local.store.get_data(th.outputs[1])
    assert d.to_dict() == remote.store.get_data(th.outputs[1]).to_dict()
    assert d.instance_id == remote.store.instance_id
    wf = local.store.get_workflow(th.workflow)
    assert wf.props == {"allocation": "A-17"} and wf.instance_id == remote.store.instance_id
    # Lineage by SQL: last output -> its job -> parent (the launched job) -> the local launcher.
    chain, job = [], local.store.get_job(local.store.get_data(th.outputs[-1]).job_id)
    while True:
        chain.append(job.id)
        if not job.context.parent_id:
            break
        job = local.store.get_job(job.context.parent_id)
    assert chain == [th.steps[-1], th.remote_root, th.launcher]
    # Imported pending triggers never fire here.
    (tr,) = local.store.triggers(watching=th.steps[-1])
    assert tr.status.value == "dead" and "fires only at its origin" in tr.reason
    # Which bundle brought what, and when.
    (b,) = list_bundles(local.store)
    assert b["origin_instance"] == remote.store.instance_id and b["sha256"] == rep.sha256
    with local.store.read() as c:
        kinds = dict(c.execute(t.bundle_items.select().with_only_columns(
            t.bundle_items.c.kind, t.bundle_items.c.ref).where(
            t.bundle_items.c.ref == th.remote_root)).all())
    assert kinds == {"job": th.remote_root}


def test_sparql_lineage_spans_both_instances(homes, tmp_path):
    graph_mod = pytest.importorskip("lwfm.provenance.graph", reason="lwfm.provenance not available")
    local, remote, th = homes
    import_bundle(local.store, local.config, _export(remote, tmp_path, workflow_id=th.workflow))
    g = graph_mod.ProvenanceGraph(local.config, local.store)
    try:
        g.sync()
        q = f"""PREFIX prov: <http://www.w3.org/ns/prov#>
                SELECT ?job WHERE {{ <urn:uuid:{th.outputs[-1]}> prov:wasGeneratedBy ?j .
                                     ?j prov:wasInformedBy* ?job }}"""
        try:
            res = g.query(q)
        except ModuleNotFoundError:  # lwfm.provenance.query not landed yet: rdflib directly
            res = g.dataset.query(q)
        rows = {str(r[0]) for r in res}
    finally:
        g.close()
    assert {f"urn:uuid:{th.launcher}", f"urn:uuid:{th.remote_root}",
            f"urn:uuid:{th.steps[-1]}"} <= rows


def test_reimport_is_a_no_op_and_incremental_adds_only_new(homes, tmp_path):
    local, remote, th = homes
    first = _export(remote, tmp_path, "b1.zip", workflow_id=th.workflow)
    import_bundle(local.store, local.config, first)
    before = snapshot(local.store)
    again = import_bundle(local.store, local.config, first)  # the very same file: known
    assert not again.changed and again.bundle_id is None and again.already_imported
    assert snapshot(local.store) == before
    # The same content re-exported (another export time, so another file): a full merge, no-op.
    same = import_bundle(local.store, local.config,
                         _export(remote, tmp_path, "b1-again.zip", workflow_id=th.workflow))
    assert not same.changed and same.already_imported is None and not same.conflicts
    assert same.unchanged["job"] == 4 and same.unchanged["data"] == 5
    assert snapshot(local.store) == before
    # More happens remotely; a later bundle brings only that.
    remote.store.record_status(JobStatus(th.steps[0], State.INFO, info="late note"))
    from lwfm.model import JobContext, JobDefn
    from tests._bundle_threads import _job
    extra = JobContext(parent_id=th.remote_root, workflow_id=th.workflow)
    _job(remote.store, JobDefn(entry=["sim", "--final"]), extra, (State.COMPLETE, 0))
    rep = import_bundle(local.store, local.config,
                        _export(remote, tmp_path, "b2.zip", workflow_id=th.workflow))
    assert rep.added == {"workflow": 0, "job": 1, "status": 3, "data": 0, "trigger": 0,
                         "triples": 0}
    assert local.store.history(th.steps[0])[-1].info == "late note"
    assert local.store.get_job(extra.job_id).state is State.COMPLETE
    assert len(list_bundles(local.store)) == 2


def test_since_and_job_selections(homes, tmp_path):
    local, remote, th = homes
    meta = _meta(_export(remote, tmp_path, "j.zip", job_id=th.steps[1]))
    ids = {e["@id"] for e in meta["@graph"]}
    assert f"urn:uuid:{th.steps[1]}" in ids and f"urn:uuid:{th.remote_root}" in ids  # ancestor
    assert f"urn:uuid:{th.steps[0]}" not in ids
    assert f"urn:uuid:{th.outputs[1]}" in ids
    meta = _meta(_export(remote, tmp_path, "s.zip", since="2000-01-01T00:00:00Z"))
    assert sum("lwfm:Job" in e.get("@type", []) for e in meta["@graph"]) == 4
    with pytest.raises(BundleError, match="ISO 8601"):
        _export(remote, tmp_path, "bad.zip", since="yesterday-ish")
    with pytest.raises(BundleError, match="exactly one"):
        export_bundle(remote.store, remote.config, tmp_path / "x.zip", all=True, job_id=th.steps[0])


def _norm(p: Path) -> dict:
    """The metadata without the export time (the only part allowed to differ)."""
    m = _meta(p)
    for e in m["@graph"]:
        if e["@id"] == "./":
            e.pop("datePublished"), e.pop("lwfm:exportTime")
    return m


def test_export_is_deterministic(homes, tmp_path):
    _, remote, th = homes
    norm = _norm
    a = norm(_export(remote, tmp_path, "a.zip", workflow_id=th.workflow))
    b = norm(_export(remote, tmp_path, "b.zip", workflow_id=th.workflow))
    assert a == b
    ids = [e["@id"] for e in a["@graph"]]
    assert len(ids) == len(set(ids))


def _conflicting_local(local: Home, th) -> None:
    # Locally the launched job was seen to FAIL; the remote says it COMPLETEd with 0.
    local.store.record_status(JobStatus(th.remote_root, State.FAILED, exit_code=137))


@pytest.mark.parametrize("mode", ["fail", "keep", "theirs"])
def test_conflict_modes(homes, tmp_path, mode):
    local, remote, th = homes
    _conflicting_local(local, th)
    out = remote.store.get_data(th.outputs[0])
    local.store.add_data(DataObject(url=out.url, id=out.id, sha256="0" * 64, size=out.size,
                                    metadata={"role": "output"}))
    bundle = _export(remote, tmp_path, workflow_id=th.workflow)
    before = snapshot(local.store)
    if mode == "fail":
        with pytest.raises(BundleError) as e:
            import_bundle(local.store, local.config, bundle)
        msg = str(e.value)
        assert f"job {th.remote_root} state" in msg and "exit_code" in msg
        assert f"data {out.id} sha256" in msg and "--on-conflict" in msg
        assert snapshot(local.store) == before
        dry = import_bundle(local.store, local.config, bundle, dry_run=True)
        assert {(c.kind, c.field) for c in dry.conflicts} == {
            ("job", "state"), ("job", "exit_code"), ("data", "sha256")}
        assert snapshot(local.store) == before
        return
    rep = import_bundle(local.store, local.config, bundle, on_conflict=mode)
    assert len(rep.conflicts) == 3
    job, data = local.store.get_job(th.remote_root), local.store.get_data(out.id)
    if mode == "keep":
        assert (job.state, job.exit_code, data.sha256) == (State.FAILED, 137, "0" * 64)
        assert State.COMPLETE not in [s.state for s in local.store.history(th.remote_root)]
    else:
        assert (job.state, job.exit_code, data.sha256) == (State.COMPLETE, 0, out.sha256)
    assert local.store.get_job(th.steps[0]).state is State.COMPLETE  # the rest came in


def test_failure_mid_import_leaves_store_and_data_dir_unchanged(homes, tmp_path, monkeypatch):
    local, remote, th = homes
    bundle = tmp_path / "data.zip"
    export_bundle(remote.store, remote.config, bundle, workflow_id=th.workflow, with_data=True)
    before = snapshot(local.store)
    real = _merge.bulk_insert

    def flaky(c, store, table, rows):
        real(c, store, table, rows)
        if table is t.statuses:
            raise RuntimeError("disk on fire")
    monkeypatch.setattr(_merge, "bulk_insert", flaky)
    with pytest.raises(RuntimeError, match="disk on fire"):
        import_bundle(local.store, local.config, bundle)
    assert snapshot(local.store) == before
    assert not any(p.is_file() for p in local.config.data_dir.rglob("*"))
    monkeypatch.setattr(_merge, "bulk_insert", real)
    rep = import_bundle(local.store, local.config, bundle)
    assert rep.payload_files == 5  # 3 outputs + 2 gets of them: each data object its own copy


def test_with_data_payload_lands_per_origin_and_verified(homes, tmp_path):
    local, remote, th = homes
    bundle = tmp_path / "data.zip"
    res = export_bundle(remote.store, remote.config, bundle, workflow_id=th.workflow, with_data=True)
    assert res.payload_files == 5  # 3 outputs + 2 gets of them (local files too)
    rep = import_bundle(local.store, local.config, bundle)
    origin = remote.store.instance_id
    copies = [d for d in local.store.find_data() if d.site == "local" and d.derived_from
              and d.instance_id == local.store.instance_id]
    assert len(copies) == 5 and rep.payload_files == 5
    for cp in copies:
        p = Path(cp.url)
        assert p.is_relative_to(local.config.data_dir / origin) and p.is_file()
        assert cp.sha256 == remote.store.get_data(cp.derived_from).sha256
        assert cp.instance_id == local.store.instance_id
    assert not import_bundle(local.store, local.config, bundle).changed


def test_rocrate_py_loads_the_bundle(homes, tmp_path):
    from rocrate.rocrate import ROCrate
    _, remote, th = homes
    bundle, d = _export_crate_dir(remote, tmp_path, th.workflow)
    crate = ROCrate(d)
    action = crate.get(f"urn:uuid:{th.steps[2]}")
    assert action is not None and "CreateAction" in action.type
    status = action["actionStatus"]  # an id ro-crate-py cannot resolve comes back as a string
    assert getattr(status, "id", status) == "http://schema.org/FailedActionStatus"
    assert action["error"] == "boom" and action["lwfm:exitCode"] == 3
    inst = crate.root_dataset["lwfm:exportingInstance"]
    assert getattr(inst, "id", inst) == f"urn:uuid:{remote.store.instance_id}"
    assert len(crate.data_entities) >= 10


@pytest.mark.slow
def test_exported_crate_passes_rocrate_validator_offline(homes, tmp_path):
    from tests._rocrate_cache import seed_cache, validate
    _, remote, th = homes
    bundle, d = _export_crate_dir(remote, tmp_path, th.workflow)
    cache = seed_cache(tmp_path / "validator-cache" / "http_cache")
    conforms = {c["@id"] for e in _meta(bundle)["@graph"] if e["@id"] == "./"
                for c in e["conformsTo"]}
    assert {"https://w3id.org/ro/wfrun/process/0.5", "https://w3id.org/ro/wfrun/workflow/0.5",
            "https://w3id.org/ro/wfrun/provenance/0.5"} <= conforms
    profiles = ["ro-crate-1.1", "process-run-crate-0.5", "workflow-run-crate-0.5",
                "provenance-run-crate-0.5"]
    for profile in profiles:
        report = validate(d, profile, cache)
        assert report["passed"], (profile, report["issues"])
        assert report["statistics"]["total_failed_checks"] == 0
        assert report["statistics"]["total_checks"] > 10


def test_cli_export_import_bundles(homes, tmp_path):
    local, remote, th = homes
    r = CliRunner()
    out = tmp_path / "cli.zip"
    res = r.invoke(__import__("lwfm.cli", fromlist=["cli"]).cli,
                   ["--home", str(remote.config.home), "export", "--workflow", th.workflow,
                    "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["counts"]["jobs"] == 4
    from lwfm.cli import cli
    res = r.invoke(cli, ["--home", str(local.config.home), "import", str(out), "--dry-run"])
    assert res.exit_code == 0 and "would add" in res.output
    res = r.invoke(cli, ["--home", str(local.config.home), "import", str(out), "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["added"]["job"] == 3
    res = r.invoke(cli, ["--home", str(local.config.home), "bundles", "--json"])
    assert json.loads(res.output)[0]["origin_instance"] == remote.store.instance_id
    assert count(local.store, t.bundles) == 1


def test_cli_errors_exit_nonzero(homes, tmp_path):
    import subprocess
    import sys
    local, remote, th = homes
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"PK\x03\x04 definitely not a zip")
    for args in (["import", str(junk)], ["import", str(tmp_path / "missing.zip")],
                 ["export", "-o", str(tmp_path / "x.zip")],
                 ["import", str(junk), "--on-conflict", "maybe"]):
        p = subprocess.run([sys.executable, "-m", "lwfm.cli", "--home", str(local.config.home), *args],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode != 0, args
        assert "error" in p.stderr.lower(), p.stderr


@pytest.mark.slow
@pytest.mark.postgres
def test_round_trip_through_postgresql(tmp_path, pg_server, monkeypatch):
    """Import into a PostgreSQL store (RETURNING path), export from it, import elsewhere."""
    from dataclasses import replace

    from lwfm.bundles import _crate
    monkeypatch.setattr(_crate, "PARALLEL_MIN", 0)   # the export from PostgreSQL uses workers

    from lwfm.store import Store
    url = pg_server.database("bundles")
    cfg = Home.open(tmp_path / "pg").config
    local = Home(replace(cfg, store_url=url), Store(url))
    remote = Home.open(tmp_path / "remote")
    third = Home.open(tmp_path / "third")
    try:
        th = build(local, remote, tmp_path)
        _conflicting_local(local, th)
        bundle = _export(remote, tmp_path, workflow_id=th.workflow)
        with pytest.raises(BundleError, match="conflict"):
            import_bundle(local.store, local.config, bundle)
        rep = import_bundle(local.store, local.config, bundle, on_conflict="theirs")
        assert rep.added["job"] == 3 and local.store.get_job(th.remote_root).state is State.COMPLETE
        before = snapshot(local.store)
        assert not import_bundle(local.store, local.config, bundle, on_conflict="theirs").changed
        assert snapshot(local.store) == before
        for jid in th.steps:
            assert [s.to_dict() for s in local.store.history(jid)] == \
                   [s.to_dict() for s in remote.store.history(jid)]
        out = tmp_path / "from-pg.zip"
        export_bundle(local.store, local.config, out, all=True)
        import_bundle(third.store, third.config, out)
        for jid in th.steps + [th.launcher]:
            assert third.store.get_job(jid).to_dict() == local.store.get_job(jid).to_dict()
        # The closure queries (a temporary table per selection) agree across both databases.
        from lwfm.bundles._select import select_closure
        for how in ({"job_id": th.launcher}, {"workflow_id": th.workflow}):
            on_pg, on_sqlite = select_closure(local.store, **how), select_closure(third.store, **how)
            assert on_pg.jobs and on_pg == on_sqlite
            assert select_closure(local.store, **how) == on_pg   # the temp table was dropped
    finally:
        local.store.close()
        remote.store.close()
        third.store.close()
        pg_server.drop(url)


def test_cli_conflicts_listed_and_refused(homes, tmp_path):
    from lwfm.cli import cli
    local, remote, th = homes
    _conflicting_local(local, th)
    out = _export(remote, tmp_path, "c.zip", workflow_id=th.workflow)
    r = CliRunner()
    home = ["--home", str(local.config.home)]
    res = r.invoke(cli, [*home, "import", str(out), "--dry-run"])
    assert res.exit_code == 1 and f"conflict: job {th.remote_root} state" in res.output
    res = r.invoke(cli, [*home, "import", str(out)])
    assert res.exit_code != 0 and isinstance(res.exception, BundleError)
    assert count(local.store, t.bundles) == 0
    res = r.invoke(cli, [*home, "import", str(out), "--on-conflict", "keep", "--quiet"])
    assert res.exit_code == 0 and res.output == ""
    res = r.invoke(cli, [*home, "bundles"])
    assert remote.store.instance_id in res.output and "3 jobs" in res.output


def test_imported_trigger_settles_with_a_later_bundle(homes, tmp_path):
    from lwfm.model import TriggerStatus
    local, remote, th = homes
    import_bundle(local.store, local.config, _export(remote, tmp_path, "t1.zip",
                                                     workflow_id=th.workflow))
    (tr,) = remote.store.triggers(watching=th.steps[-1])
    assert local.store.get_trigger(tr.id).status is TriggerStatus.DEAD  # parked: fires only there
    assert remote.store.settle_trigger(tr.id, TriggerStatus.FIRED, fired_by=th.steps[-1])
    later = _export(remote, tmp_path, "t2.zip", workflow_id=th.workflow)
    rep = import_bundle(local.store, local.config, later)
    assert rep.updated["trigger"] == 1 and not rep.conflicts
    got = local.store.get_trigger(tr.id)
    assert got.status is TriggerStatus.FIRED and got.fired_by == th.steps[-1]
    assert got.to_dict() == remote.store.get_trigger(tr.id).to_dict()


def test_parallel_export_writes_the_same_metadata(homes, tmp_path, monkeypatch):
    from lwfm.bundles import _crate
    _, remote, th = homes
    norm = _norm
    serial = norm(_export(remote, tmp_path, "serial.zip", workflow_id=th.workflow))
    monkeypatch.setattr(_crate, "PARALLEL_MIN", 0)
    monkeypatch.setattr("lwfm.bundles._parallel.workers", lambda: 3)
    assert norm(_export(remote, tmp_path, "parallel.zip", workflow_id=th.workflow)) == serial


def _children() -> set[int]:
    pids: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        pids |= {int(x) for x in (task / "children").read_text().split()}
    return pids


def test_export_workers_started_early_are_gone_after_export(homes, tmp_path, monkeypatch):
    """A large export starts its workers before its closure is known. Whether they then
    get a slice (a workflow), none (a selection that turns out small), or the export
    fails, afterwards no worker process and no scratch folder of theirs is left."""
    import tempfile

    from lwfm.bundles import _crate
    _, remote, th = homes
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    started = []
    real = _crate.Workers

    class Counted(real):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            started.append(self)

    monkeypatch.setattr(_crate, "Workers", Counted)
    before = _children()
    serial = _norm(_export(remote, tmp_path, "serial.zip", workflow_id=th.workflow))
    assert not started   # a small thread: no workers at all
    monkeypatch.setattr(_crate, "PARALLEL_MIN", 0)
    assert _norm(_export(remote, tmp_path, "early.zip", workflow_id=th.workflow)) == serial
    assert len(started) == 1 and all(p.returncode == 0 for p in started[0].procs)
    # Hinted large, found small: the early workers get no slice and are stopped.
    monkeypatch.setattr(_crate, "size_hint", lambda *a, **k: 10 ** 9)
    monkeypatch.setattr(_crate, "PARALLEL_MIN", 10 ** 6)
    assert _norm(_export(remote, tmp_path, "unused.zip", workflow_id=th.workflow)) == serial
    assert len(started) == 2 and started[1].procs
    assert all(p.returncode is not None for p in started[1].procs)   # ended, reaped
    # A closure that fails (an unknown job) after the workers started.
    with pytest.raises(Exception, match="no job"):
        export_bundle(remote.store, remote.config, tmp_path / "bad.zip", job_id="nope")
    monkeypatch.setattr(_crate, "PARALLEL_MIN", 0)
    with pytest.raises(Exception):
        export_bundle(remote.store, remote.config, tmp_path / "bad.zip", workflow_id="nope")
    assert _children() - before == set()
    assert list(scratch.iterdir()) == []
    assert not (tmp_path / "bad.zip").exists()


def test_unicode_and_huge_integers_round_trip(homes, tmp_path, monkeypatch):
    """Metadata with non-ASCII text and an integer beyond 64 bits (which the fast JSON
    encoder refuses, so the standard one writes it) arrives exactly, whole or streamed,
    from a single process or from export workers."""
    from lwfm.bundles import _crate
    local, remote, th = homes
    md = {"title": "Ünïcode ✓ 数据", "big": 2 ** 70, "neg": -(2 ** 65), "pi": 3.25}
    d = remote.store.add_data(DataObject(url="/lab/ü.h5", job_id=th.steps[0], metadata=md,
                                         workflow_id=th.workflow))
    for workers in (False, True):
        if workers:
            monkeypatch.setattr(_crate, "PARALLEL_MIN", 0)
        out = _export(remote, tmp_path, f"u{workers}.zip", workflow_id=th.workflow)
        assert "Ünïcode ✓ 数据" in zipfile.ZipFile(out).read("ro-crate-metadata.json").decode()
        import_bundle(local.store, local.config, out)
        got = local.store.get_data(d.id)
        assert got.metadata == md and got.url == "/lab/ü.h5"
        assert local.store.find_data({"big": 2 ** 70})[0].id == d.id


def test_unnamed_runs_of_one_program_are_one_step_and_named_jobs_their_own(tmp_path):
    """A sweep submitted without names (``sim --step=N``) is one step of the exported
    workflow, not one step per run; a job given a name is the step of that name."""
    from lwfm import JobDefn, Manager
    from lwfm.bundles import _workflow
    with Manager(tmp_path / "home") as m:
        wf = m.create_workflow("sweep")
        jobs = [m.submit(JobDefn(entry=["true", f"--step={i}"]), workflow_id=wf.id)
                for i in range(3)]
        jobs.append(m.submit(JobDefn(entry=["true", "post"], name="post"), workflow_id=wf.id))
        m.wait_all(jobs, timeout=60)
        out = tmp_path / "b.zip"
        export_bundle(m.store, m.config, out, workflow_id=wf.id)
    with zipfile.ZipFile(out) as z:
        steps = json.loads(z.read(_workflow.MAIN))["steps"]
    assert [(s["name"], s["runs"]) for s in steps] == [("post", 1), ("true", 3)]
    g = {e["@id"]: e for e in _meta(out)["@graph"]}
    control = [e for e in g.values() if e.get("@type") == "ControlAction"]
    assert sorted(len(c["object"]) for c in control) == [1, 3]


def test_a_job_fed_several_data_keeps_what_fed_it_through_a_bundle(homes, tmp_path):
    """A data trigger on two steps' outputs (data futures), fired at the remote lab: the
    bundle carries its inputs, the data that fed the job (``used``) and the producers it
    is woken by; the importing graph says the job used each."""
    from lwfm.model import Job, JobContext, JobDefn, Trigger
    from lwfm.provenance.graph import ProvenanceGraph
    local, remote, th = homes
    ins = [{"pattern": {"step": i, "role": "output"}, "producer": th.steps[i]} for i in (0, 1)]
    tr = remote.store.add_trigger(Trigger(kind="data", defn=JobDefn(entry=["merge"]),
                                          inputs=ins, workflow_id=th.workflow))
    job = Job(JobDefn(entry=["merge"]), JobContext(job_id=tr.job_id, workflow_id=th.workflow),
              triggered_by=tr.id)
    used = th.outputs[:2]
    assert remote.store.fire_trigger(tr.id, used[1], job, JobStatus(job.id, State.PENDING),
                                     "test", used=used)
    assert not remote.store.fire_trigger(tr.id, used[1], job, JobStatus(job.id, State.PENDING),
                                         "test", used=used[:1])   # fired once: body kept
    assert remote.store.get_trigger(tr.id).used == used
    import_bundle(local.store, local.config, _export(remote, tmp_path, workflow_id=th.workflow))
    got = local.store.get_trigger(tr.id)
    assert (got.status.value, got.fired_by, got.used, got.inputs) == ("fired", used[1], used, ins)
    assert got.data_inputs() == [(i["pattern"], i["producer"]) for i in ins]
    for step in th.steps[:2]:
        assert tr.id in {x.id for x in local.store.triggers(watching=step)}
    g = ProvenanceGraph(local.config, local.store)
    try:
        g.sync()
        rows = {str(r[0]) for r in g.query(
            f"PREFIX prov: <http://www.w3.org/ns/prov#> SELECT ?d WHERE {{ "
            f"<urn:uuid:{job.id}> prov:used ?d }}")}
        assert g.check() == []
    finally:
        g.close()
    assert rows == {f"urn:uuid:{d}" for d in used}
