"""The published JSON-LD contexts lwfm ships: byte for byte as published, resolved
locally, and the only remote contexts an import accepts."""

from __future__ import annotations

import hashlib
import json
import zipfile

import pytest

from lwfm.bundles import import_bundle
from lwfm.errors import BundleError
from lwfm.ontology import context_document, context_files, path
from tests._bundle_threads import snapshot
from tests.test_bundles_foreign import CRATES, home  # noqa: F401  (the fixture)

RECORD = json.loads(path("contexts.json").read_text())["contexts"]


@pytest.mark.parametrize("entry", RECORD, ids=[c["file"] for c in RECORD])
def test_shipped_context_is_the_recorded_published_file(entry):
    body = path(entry["file"]).read_bytes()
    assert hashlib.sha256(body).hexdigest() == entry["sha256"]
    for url in entry["urls"]:
        assert context_files()[url] == entry["file"]
        assert context_files()[url.replace("https://", "http://") + "/"] == entry["file"]
        assert "@context" in context_document(url)


def test_each_version_maps_workflow_terms_as_its_publication_does():
    v11 = context_document("https://w3id.org/ro/crate/1.1/context")["@context"]
    v13 = context_document("https://w3id.org/ro/crate/1.3/context")["@context"]
    assert v11["ComputationalWorkflow"] == "https://bioschemas.org/ComputationalWorkflow"
    assert v11["input"] == "https://bioschemas.org/ComputationalWorkflow#input"
    assert v11["FormalParameter"] == "https://bioschemas.org/FormalParameter"
    assert "sha256" not in v11
    assert v13["ComputationalWorkflow"] == "https://bioschemas.org/terms/ComputationalWorkflow"
    wf = context_document("https://w3id.org/ro/terms/workflow-run")["@context"]
    assert wf["ParameterConnection"] == "https://w3id.org/ro/terms/workflow-run#ParameterConnection"


def _crate(tmp_path, context, name="c"):
    doc = json.loads((CRATES / "galaxy_process" / "ro-crate-metadata.json").read_text())
    doc["@context"] = context
    out = tmp_path / f"{name}.zip"
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("ro-crate-metadata.json", json.dumps(doc))
    return out


@pytest.mark.parametrize("ctx", [
    ["https://w3id.org/ro/crate/1.3/context", "https://w3id.org/ro/terms/workflow-run"],
    ["https://w3id.org/ro/crate/1.2/context"],
    "http://w3id.org/ro/crate/1.1/context/",
])
def test_crates_on_every_shipped_context_import(home, tmp_path, ctx):
    rep = import_bundle(home.store, home.config, _crate(tmp_path, ctx))
    assert rep.foreign and rep.added["job"] >= 2


def test_unknown_remote_context_is_refused_with_what_is_accepted(home, tmp_path):
    before = snapshot(home.store)
    bad = _crate(tmp_path, ["https://w3id.org/ro/crate/1.4/context"])
    with pytest.raises(BundleError, match=r"remote or unknown @context .*1\.4.*never fetches.*"
                                          r"1\.1, 1\.2 and 1\.3.*workflow-run"):
        import_bundle(home.store, home.config, bad)
    assert snapshot(home.store) == before
