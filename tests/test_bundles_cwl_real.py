"""A real CWL run: cwltool --provenance, converted by runcrate, imported losslessly; and
lwfm's own export read back by runcrate. Each tool runs from a venv of its own
(tests/_cwl_tools.py), built once per cache directory."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import pytest
from rdflib.compare import isomorphic

from lwfm.bundles import export_bundle, import_bundle
from lwfm.provenance.graph import ProvenanceGraph
from tests._bundle_threads import Home
from tests._cwl_tools import CWLTOOL, RUNCRATE, venv
from tests.test_bundles_lossless import PREFIXES, QUERIES, answers, arcp, reference, stored  # noqa: F401

pytestmark = pytest.mark.slow

WORKFLOW = """cwlVersion: v1.2
class: Workflow
inputs:
  text: File
  reverse: boolean
outputs:
  sorted:
    type: File
    outputSource: sort/out
steps:
  upper:
    run:
      class: CommandLineTool
      baseCommand: [tr, a-z, A-Z]
      stdin: $(inputs.src.path)
      inputs:
        src: File
      stdout: upper.txt
      outputs:
        out:
          type: stdout
    in:
      src: text
    out: [out]
  sort:
    run:
      class: CommandLineTool
      baseCommand: [sort]
      inputs:
        reverse:
          type: boolean
          inputBinding:
            prefix: -r
        lines:
          type: File
          inputBinding: {}
      stdout: sorted.txt
      outputs:
        out:
          type: stdout
    in:
      lines: upper/out
      reverse: reverse
    out: [out]
"""


@pytest.fixture(scope="module")
def cwl_crate(tmp_path_factory) -> Path:
    """A zipped Provenance Run Crate of a real two-step CWL run."""
    cwltool = venv("cwltool", CWLTOOL) / "cwltool"
    runcrate = venv("runcrate", RUNCRATE) / "runcrate"
    d = tmp_path_factory.mktemp("cwl")
    (d / "wf.cwl").write_text(WORKFLOW)
    (d / "fruit.txt").write_text("banana\napple\ncherry\n")
    (d / "job.yml").write_text("text:\n  class: File\n  path: fruit.txt\nreverse: true\n")
    run = subprocess.run([str(cwltool), "--provenance", "RO", "--no-container", "--outdir", "out",
                          "wf.cwl", "job.yml"], cwd=d, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (d / "out" / "sorted.txt").read_text() == "CHERRY\nBANANA\nAPPLE\n"
    conv = subprocess.run([str(runcrate), "convert", "RO", "-o", "CRATE"], cwd=d,
                          capture_output=True, text=True, timeout=600)
    assert conv.returncode == 0, conv.stderr[-3000:]
    out = d / "cwl-crate.zip"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted((d / "CRATE").rglob("*")):
            z.write(f, f.relative_to(d / "CRATE").as_posix())
    return out


def test_real_cwl_crate_imports_losslessly(cwl_crate, tmp_path, arcp):  # noqa: F811
    doc = json.loads(zipfile.ZipFile(cwl_crate).read("ro-crate-metadata.json"))
    assert "https://w3id.org/ro/crate/1.3/context" in doc["@context"]   # as runcrate writes today
    assert "https://w3id.org/ro/terms/workflow-run" in doc["@context"]
    h = Home.open(tmp_path / "home")
    try:
        rep = import_bundle(h.store, h.config, cwl_crate)
        ref = reference(doc, f"arcp://uuid,{rep.origin_instance}/")
        jobs = {j.defn.name: j for j in h.store.find_jobs(site="imported")}
        run = jobs["Run of workflow/packed.cwl#main"]
        steps = [j for n, j in jobs.items() if n != run.defn.name]
        assert len(steps) == 2 and all(j.context.parent_id == run.id for j in steps)
        g = ProvenanceGraph(h.config, h.store)
        try:
            g.sync()
            assert isomorphic(stored(g, rep.crate_graph), ref)
            for q, union_too in QUERIES:
                want = answers(ref.query(PREFIXES + q.replace("{from}", "")))
                assert answers(g.query(PREFIXES + q.replace("{from}", f"FROM <{rep.crate_graph}>"))) \
                    == want, q
            # which parameter values fed which step: the crate answers, and so does lwfm
            q = PREFIXES + """SELECT ?step ?name ?value WHERE { ?a schema:instrument ?step ;
                schema:object ?pv . ?pv a schema:PropertyValue ; schema:name ?name ;
                schema:value ?value }"""
            want = answers(ref.query(q))
            assert want and answers(g.query(q)) == want
            # the sorted output's lineage reaches the workflow run's input file
            sorted_out = next(d for d in h.store.find_data({"name": "sorted.txt"})
                              if d.direction.value == "put")
            ups = {n.id for n in g.lineage(sorted_out.id).nodes}
            assert all(s.id in ups for s in steps)   # sort made it, from what upper made
            assert any(d.id in ups for d in h.store.find_data({"name": "fruit.txt"}))
        finally:
            g.close()
    finally:
        h.store.close()


def test_runcrate_reads_lwfm_exports(tmp_path):
    from tests._bundle_threads import build
    local, remote = Home.open(tmp_path / "l"), Home.open(tmp_path / "r")
    try:
        th = build(local, remote, tmp_path)
        out = export_bundle(remote.store, remote.config, tmp_path / "b.zip",
                            workflow_id=th.workflow).path
    finally:
        local.store.close()
        remote.store.close()
    runcrate = venv("runcrate", RUNCRATE) / "runcrate"
    r = subprocess.run([str(runcrate), "report", str(out)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    # the workflow run, and every job as the run of a step of lwfm's workflow
    assert "action: #run\n  instrument: workflow.json" in r.stdout
    assert r.stdout.count("  step: #step-") >= len(th.steps)
