"""ibm_quantum sites whose qiskit calls run in venv sandboxes (the venv site's own
machinery): one pinned to the qiskit 1.x line, one to the host's 2.x line, side by side
in one workflow. OFFLINE: the fake backends run in qiskit-ibm-runtime's local mode with
qiskit-aer; IBM's cloud cannot be reached here. The venvs are built once per cache
directory (tests/_quantum.py), so these are slow only on a fresh machine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lwfm import JobDefn, Manager, SiteError, State, TriggerStatus
from lwfm.files import local_path
from tests._quantum import GHZ3, toml_site

pytestmark = [pytest.mark.quantum, pytest.mark.slow]
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "quantum_benchmark" / "run.py"


@pytest.fixture
def two_sandboxes(home: Path, quantum_venvs: dict) -> Path:
    (home / "lwfm.toml").write_text(
        toml_site("old", "FakeBelemV2", execution_mode="batch", **quantum_venvs["qiskit1"])
        + toml_site("new", "FakeManilaV2", execution_mode="session", **quantum_venvs["qiskit2"]))
    return home


def test_one_circuit_moves_between_incompatible_sandboxes(two_sandboxes: Path, tmp_path: Path):
    src = tmp_path / "ghz.qasm"
    src.write_text(GHZ3)
    with Manager(two_sandboxes) as m:
        wf = m.create_workflow("two-qiskits")
        c = m.put(src, str(tmp_path / "kept" / "ghz.qasm"), metadata={"kind": "qasm"})
        jobs = {s: m.submit(JobDefn(kind="circuit", site=s, entry={"data": c.id, "shots": 300}),
                            workflow_id=wf.id) for s in ("old", "new")}
        for j in jobs.values():
            assert m.wait(j.id, timeout=300).state is State.COMPLETE, m.history(j.id)
        res = {s: m.find({"kind": "quantum_result"}, job_id=j.id)[0] for s, j in jobs.items()}
        old, new = res["old"].metadata, res["new"].metadata
        assert old["qiskit"].startswith("1.") and new["qiskit"].startswith("2.")
        assert old["qiskit_ibm_runtime"] == "0.29.0" and old["backend"] == "fake_belem"
        assert old["sandbox"].endswith("qiskit1") and new["sandbox"].endswith("qiskit2")
        assert old["circuit_sha256"] == new["circuit_sha256"]
        assert res["old"].derived_from == res["new"].derived_from == c.id
        # the worker processes really run in the two venvs
        where = {s: m.site(s).kernel.describe() for s in jobs}
        assert where["old"]["prefix"] != where["new"]["prefix"]
        assert where["old"]["versions"]["qiskit"] == "1.2.4"
        for j in jobs.values():
            assert "sandbox " in m.history(j.id)[1].info
        # the thread says which sandbox ran what, with its versions
        rows = m.graph.select_values(
            "SELECT ?job ?v ?box WHERE { ?d prov:wasGeneratedBy ?job ; "
            "schema:additionalProperty ?p, ?q . ?p schema:propertyID \"qiskit\" ; schema:value ?v ."
            " ?q schema:propertyID \"sandbox\" ; schema:value ?box }")
        seen = {job.rsplit(":", 1)[-1]: (v, box) for job, v, box in rows}
        assert seen[jobs["old"].id][0] == "1.2.4" and seen[jobs["new"].id][0] == new["qiskit"]
        assert seen[jobs["old"].id][1] == old["sandbox"]


def test_errors_in_a_sandbox_are_clear(two_sandboxes: Path):
    big = ('OPENQASM 2.0; include "qelib1.inc"; qreg q[9]; creg c[9]; h q[0]; '
           'measure q -> c;')
    with Manager(two_sandboxes) as m:
        with pytest.raises(SiteError) as e:
            m.submit(JobDefn(kind="circuit", site="old", entry={"qasm": big}))
        assert "needs 9 qubits; backend fake_belem has 5" in str(e.value)
        assert "Traceback" not in str(e.value) and "qiskit1" in str(e.value)
        names = {b["name"] for b in m.site("old").spin.backends()}
        assert "fake_belem" in names


def test_a_killed_sandbox_worker_fails_its_jobs_clearly(two_sandboxes: Path):
    """SIGKILL of the sandbox's worker while a circuit simulates: the job is recorded
    FAILED saying why, and the next job starts a new worker and completes."""
    wide = ('OPENQASM 2.0; include "qelib1.inc"; qreg q[5]; creg c[5]; '
            + " ".join(f"h q[{i}]; cx q[{i}],q[{(i + 1) % 5}];" for i in range(5)) * 40
            + " measure q -> c;")
    with Manager(two_sandboxes) as m:
        job = m.submit(JobDefn(kind="circuit", site="old", entry={
            "qasm": wide, "shots": 300000, "optimization_level": 0}))
        worker = m.site("old").kernel.sandbox.existing_worker()
        os.kill(worker.pid, signal.SIGKILL)
        job = m.wait(job.id, timeout=120)
        assert job.state is State.FAILED
        assert "was its worker killed" in m.history(job.id)[-1].info
        again = m.wait(m.submit(JobDefn(kind="circuit", site="old",
                                        entry={"qasm": GHZ3, "shots": 100})).id, timeout=300)
        assert again.state is State.COMPLETE


def test_the_quantum_benchmark_example(home: Path, quantum_venvs: dict):
    venvs = Path(quantum_venvs["qiskit1"]["venv_dir"]).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("LWFM_")}
    env.update(LWFM_HOME=str(home), LWFM_QUANTUM_VENVS=str(venvs))
    p = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, env=env,
                       cwd=home, timeout=900)
    assert p.returncode == 0, p.stdout + p.stderr
    lines = p.stdout.splitlines()
    assert lines[-1] == "OK"
    out = json.loads(lines[-2])
    assert {r["backend"] for r in out["rows"]} == {"fake_manila", "fake_lima", "fake_belem"}
    assert sorted(out["qiskit_by_site"].values())[0] == "1.2.4"
    assert all(0.5 < r["fidelity"] <= 1 for r in out["rows"])
    png = local_path(out["outputs"]["png"]).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    table = local_path(out["outputs"]["markdown"]).read_text()
    assert table.count("| fake_") == 3
    with Manager(home) as m:
        compare = m.status(out["compare_job"])
        tr = m.store.get_trigger(compare.triggered_by)
        assert tr.status is TriggerStatus.FIRED and sorted(tr.watch) == sorted(out["runs"])
        # circuit -> runs -> results -> comparison, one walk up from the plot
        (plot,) = m.find({"kind": "comparison", "format": "png"})
        ancestors = {n.id for n in m.graph.lineage(plot.id).nodes}
        results = {r["result"] for r in out["rows"]}
        assert {out["compare_job"], *results, *out["runs"], out["circuit_id"]} <= ancestors
    # the thread travels: a bundle imported elsewhere still selects results by backend
    bundle = home.parent / "quantum.zip"
    other = home.parent / "elsewhere"
    other.mkdir()
    for args, h in ((["export", "--all", "--with-data", "-o", str(bundle), "--quiet"], home),
                    (["import", str(bundle)], other)):
        p = subprocess.run([sys.executable, "-m", "lwfm.cli", *args], capture_output=True,
                           text=True, env={**env, "LWFM_HOME": str(h)}, timeout=300)
        assert p.returncode == 0, p.stderr
    with Manager(other) as m:
        (belem,) = m.find({"kind": "quantum_result", "backend": "fake_belem"})
        assert belem.metadata["qiskit"] == "1.2.4" and belem.id in results
