"""examples/globus_archive, offline: the Globus cloud cannot be reached from here, so the
example runs in this process against globus-sdk's testing fakes (tests/_globus_fake.py,
``globus_sdk.testing`` + ``responses``), with sockets blocked. Its local job is a real
process; the store, graph and files are real."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from lwfm import Manager, State
from tests._globus_fake import FakeGlobus, fake_globus  # noqa: F401 - the fixture
from tests._globus_helpers import configure, login, lwfm_cli

pytestmark = pytest.mark.globus
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "globus_archive" / "archive.py"


def test_archive_example_round_trip(home: Path, fake_globus: FakeGlobus,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Offline against the fakes: the example archives a job's output and restores it; the
    thread links restored.csv back through the archive copy to the job that wrote it."""
    spec = importlib.util.spec_from_file_location("globus_archive_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    configure(home, fake_globus)
    assert mod.main(["archive"]) == 2          # not logged in yet: says what to run
    assert "lwfm login archive" in capsys.readouterr().err
    assert login(home).exit_code == 0
    assert mod.main(["archive"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1].startswith("OK restored sha256 ")
    assert "made by 'globus put result.csv'" in out and "made by 'globus get " in out
    with Manager() as m:
        jobs = {j.defn.name: j for j in m.store.find_jobs()}
        sim, put, get = jobs["simulate"], jobs["globus put result.csv"], jobs["globus get result.csv"]
        assert {j.state for j in (sim, put, get)} == {State.COMPLETE}
        assert put.context.parent_id == sim.id == get.context.parent_id
        assert put.context.workflow_id == sim.context.workflow_id
        archived = [d for d in m.find({"archived": True})][0]
        assert archived.url.startswith(f"globus://{fake_globus.archive}/store/")
        assert fake_globus.path(fake_globus.archive, archived.url.split(fake_globus.archive)[1]).is_file()
        q = """SELECT ?sim_name ?put ?get WHERE {
                 ?restored schema:name "restored.csv" ; prov:wasGeneratedBy ?get ;
                           prov:wasDerivedFrom+ ?origin .
                 ?get prov:used ?archived_used .
                 ?archived_used prov:wasDerivedFrom ?archive_copy .
                 ?archive_copy prov:wasGeneratedBy ?put ; prov:wasDerivedFrom ?local_used .
                 ?put prov:used ?local_used .
                 ?origin prov:wasGeneratedBy ?sim . ?sim schema:name ?sim_name .
               }"""
        rows = m.graph.select_values(q)
        assert (("simulate", f"urn:uuid:{put.id}", f"urn:uuid:{get.id}") in rows), rows
    r = lwfm_cli(home, "thread", "globus-archive")   # as the README shows it
    assert r.exit_code == 0 and "globus put result.csv" in r.output, r.output
    assert "restored.csv" in r.output
