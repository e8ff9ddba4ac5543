"""RO-Crates written by other workflow systems import: what maps is queryable, the rest reported."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from lwfm.bundles import import_bundle

from lwfm.model import State
from tests._bundle_threads import Home, snapshot

CRATES = Path(__file__).parent / "fixtures" / "crates"


def zipped(name: str, tmp: Path) -> Path:
    out = tmp / f"{name}.zip"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted((CRATES / name).rglob("*")):
            z.write(f, f.relative_to(CRATES / name).as_posix())
    return out


@pytest.fixture
def home(tmp_path):
    h = Home.open(tmp_path / "home")
    yield h
    h.store.close()


def _jobs_by_name(store):
    return {j.defn.name: j for j in store.find_jobs(site="imported")}


def test_cwl_provenance_run_crate(home, tmp_path):
    rep = import_bundle(home.store, home.config, zipped("cwl_provenance", tmp_path))
    assert rep.foreign and rep.added["job"] == 3 and rep.added["workflow"] == 1
    jobs = _jobs_by_name(home.store)
    run = jobs["Run of workflow/packed.cwl#main"]
    rev, srt = jobs["Run of workflow/packed.cwl#main/rev"], jobs["Run of workflow/packed.cwl#main/sorted"]
    # OrganizeAction/ControlActions make the step runs children of the workflow run.
    assert rev.context.parent_id == run.id and srt.context.parent_id == run.id
    assert rev.context.originator_id == run.id
    assert rev.state is State.COMPLETE and rev.started.isoformat().startswith("2024-03-01T10:10:01")
    assert rev.defn.entry["name"] == "revtool.cwl" or rev.defn.entry["instrument"] == "packed.cwl#revtool.cwl"
    # Data flow: rev's output is sorted's input.
    (made,) = home.store.find_data({"rocrate_id": "97fe1b50b4582cebc7d853796ebd62e3e163aa3f"},
                                   job_id=rev.id)
    (used,) = home.store.find_data({"rocrate_id": "97fe1b50b4582cebc7d853796ebd62e3e163aa3f"},
                                   job_id=srt.id)
    assert made.direction.value == "put" and used.direction.value == "get" and made.size == 1111
    wf = home.store.get_workflow(rev.context.workflow_id)
    assert wf.name == "run of revsort.cwl"
    assert wf.props["rocrate"]["agents"] == ["Josiah Carberry"]
    assert "https://w3id.org/ro/wfrun/provenance/0.5" in wf.props["rocrate"]["conformsTo"]
    text = "\n".join(rep.unmapped)
    assert "PropertyValue" in text and "FormalParameter" in text and "HowToStep" in text
    assert "'containerImage'" in text


def test_nextflow_workflow_run_crate(home, tmp_path):
    rep = import_bundle(home.store, home.config, zipped("nextflow_wrroc", tmp_path))
    assert rep.added["job"] == 3
    jobs = _jobs_by_name(home.store)
    mqc = jobs["MULTIQC"]
    assert mqc.state is State.FAILED and mqc.exit_code == 137
    assert home.store.history(mqc.id)[-1].info == "exit status 137 (out of memory)"
    (sheet,) = home.store.find_data({"name": "samplesheet.csv"}, job_id=jobs["Nextflow workflow run 7f3a"].id)
    assert sheet.sha256 == "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    assert sheet.size == 812 and sheet.media_type == "text/csv"
    (report,) = home.store.find_data({"name": "multiqc_report.html"}, job_id=mqc.id)
    assert report.media_type == "text/html"
    assert home.store.find_data({"name": "fastqc"})  # a Dataset (directory) maps too
    assert any("resourceUsage" in u for u in rep.unmapped)
    wf = home.store.get_workflow(mqc.context.workflow_id)
    assert wf.props["rocrate"]["crate"] == "https://example.org/runs/nf-demo-2024-05-02"


def test_galaxy_like_crate_and_odd_values(home, tmp_path):
    rep = import_bundle(home.store, home.config, zipped("galaxy_process", tmp_path))
    jobs = _jobs_by_name(home.store)
    assert jobs["Cutadapt on data 1"].state is State.COMPLETE
    assert jobs["FastQC on data 2"].state is State.RUNNING
    assert jobs["Cutadapt on data 1"].started.isoformat() == "2024-06-10T07:00:00+00:00"
    (reads,) = home.store.find_data({"name": "reads_1.fastqsanger"})
    assert reads.size is None  # "not a number" is dropped, not a crash
    assert any("#unknown-thing" in u and "missing entity" in u for u in rep.unmapped)
    assert any("environment" in u for u in rep.unmapped)


@pytest.mark.parametrize("name", ["cwl_provenance", "nextflow_wrroc", "galaxy_process"])
def test_foreign_import_is_idempotent(home, tmp_path, name):
    bundle = zipped(name, tmp_path)
    first = import_bundle(home.store, home.config, bundle)
    before = snapshot(home.store)
    again = import_bundle(home.store, home.config, bundle)
    assert first.changed and not again.changed
    assert snapshot(home.store) == before


def test_foreign_crate_with_remote_context_is_refused(home, tmp_path):
    d = tmp_path / "evil"
    d.mkdir()
    doc = json.loads((CRATES / "galaxy_process" / "ro-crate-metadata.json").read_text())
    doc["@context"] = ["https://w3id.org/ro/crate/1.1/context", "https://evil.example/terms.jsonld"]
    (d / "ro-crate-metadata.json").write_text(json.dumps(doc))
    out = tmp_path / "evil.zip"
    with zipfile.ZipFile(out, "w") as z:
        z.write(d / "ro-crate-metadata.json", "ro-crate-metadata.json")
    from lwfm.errors import BundleError
    before = snapshot(home.store)
    with pytest.raises(BundleError, match="remote or unknown @context"):
        import_bundle(home.store, home.config, out)
    assert snapshot(home.store) == before


def test_derived_ids_are_uuid5_exactly():
    """Derived ids must never change across lwfm versions: importing a crate again adds
    nothing only because its records get the same ids."""
    import uuid

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from lwfm.bundles._common import ID_NS, derived_id

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.text(), min_size=1, max_size=4))
    def check(parts):
        assert derived_id(*parts) == str(uuid.uuid5(ID_NS, "\x1f".join(parts)))
    check()


def _chain_crate(path: Path, n: int, extra: list[dict] | None = None,
                 identifier: str | None = None) -> Path:
    """A Workflow Run Crate of ``n`` chained tool runs (each uses the file the one before
    made; '#task-10' sorts before '#task-2', so a use is often mapped before its making;
    one run has no times, so it is created at the time of the run before it)."""
    graph = [{"@id": "ro-crate-metadata.json", "@type": "CreativeWork", "about": {"@id": "./"},
              "conformsTo": {"@id": "https://w3id.org/ro/crate/1.1"}},
             {"@id": "./", "@type": "Dataset", "name": "chain", "datePublished": "2026-01-02T03:04:05Z",
              "mainEntity": {"@id": "main.nf"}},
             {"@id": "main.nf", "@type": ["File", "SoftwareSourceCode", "ComputationalWorkflow"],
              "name": "pipeline"},
             {"@id": "data/in-0.txt", "@type": "File", "name": "in-0.txt", "contentSize": 10}]
    for i in range(n):
        run = {"@id": f"#task-{i}", "@type": "CreateAction", "name": f"STEP ({i})",
               "instrument": {"@id": "main.nf"}, "object": {"@id": f"data/in-{i}.txt"},
               "result": {"@id": f"data/in-{i + 1}.txt"}}
        if i != 7:
            run.update(startTime=f"2026-01-02T04:{i:02d}:00Z", endTime=f"2026-01-02T04:{i:02d}:30Z")
        if i in (2, 19):   # (a note in the report, from the first batch and a later one)
            run["object"] = [run["object"], {"@id": f"#gone-{i}"}]
        graph += [run, {"@id": f"data/in-{i + 1}.txt", "@type": "File", "name": f"in-{i + 1}.txt",
                        "contentSize": 100 + i, "sha256": f"{i:064x}"}]
    if identifier:
        graph[1]["identifier"] = identifier
    doc = {"@context": "https://w3id.org/ro/crate/1.1/context", "@graph": graph + (extra or [])}
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("ro-crate-metadata.json", json.dumps(doc))
    return path


def test_foreign_crate_mapped_in_batches_is_the_same(tmp_path, monkeypatch):
    """A large crate is mapped and written a batch of actions at a time: the rows, links
    and report are those of one batch, and a use still derives from its making when the
    making is in a later batch."""
    import lwfm.bundles._importer as importer
    crate = _chain_crate(tmp_path / "chain.zip", 23)
    got = []
    for name, batch in (("whole", 10_000), ("batched", 4)):
        monkeypatch.setattr(importer, "BATCH", batch)
        h = Home.open(tmp_path / name)
        try:
            rep = import_bundle(h.store, h.config, crate)
            snap = snapshot(h.store)
            got.append((rep.added, rep.unmapped, {k: snap[k] for k in (
                "workflows", "jobs", "statuses", "data", "data_meta", "crate_nodes")}))
            used = h.store.find_data({"rocrate_id": "data/in-3.txt"})
        finally:
            h.store.close()
        (made,) = [d for d in used if d.direction.value == "put"]
        (use,) = [d for d in used if d.direction.value == "get"]
        assert use.derived_from == made.id
    assert got[0] == got[1]
    assert sum("#gone-" in u and "missing entity" in u for u in got[0][1]) == 2
    assert got[0][0]["job"] == 23 and got[0][0]["data"] == 46


def test_foreign_crate_refused_in_a_later_batch_leaves_the_store_unchanged(tmp_path, monkeypatch):
    """Two runs with one job id (one names it as its urn:uuid) in different batches: the
    import is refused when the second batch is read, after the first was written, and
    the store is as it was."""
    import lwfm.bundles._importer as importer
    from lwfm.bundles._common import derived_id
    from lwfm.errors import BundleError
    key = "https://example.org/runs/dup"
    twin = {"@id": f"urn:uuid:{derived_id(key, 'action', '#task-0')}", "@type": "CreateAction",
            "name": "twin", "instrument": {"@id": "main.nf"}}
    crate = _chain_crate(tmp_path / "dup.zip", 23, extra=[twin], identifier=key)
    monkeypatch.setattr(importer, "BATCH", 4)
    h = Home.open(tmp_path / "home")
    try:
        before = snapshot(h.store)
        with pytest.raises(BundleError, match="two job records share one id"):
            import_bundle(h.store, h.config, crate)
        assert snapshot(h.store) == before
    finally:
        h.store.close()
