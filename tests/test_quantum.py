"""The ibm_quantum site, run OFFLINE: qiskit-ibm-runtime's local mode on its fake
backends (FakeManilaV2, FakeLimaV2) with qiskit-aer stands in for IBM's cloud, which
cannot be reached here. Everything else is real: the Manager, the SQLite store, the
provenance graph, the CLI in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lwfm import (ConfigError, EntryKind, InvalidInput, JobDefn, LwfmError, Manager, NotSupported,
                  SiteError,
                  State)
from lwfm.files import local_path
from tests._quantum import GHZ3, toml_site

pytestmark = pytest.mark.quantum


@pytest.fixture
def qhome(home: Path) -> Path:
    (home / "lwfm.toml").write_text(toml_site("manila", "FakeManilaV2")
                                    + toml_site("lima", "fake_lima", execution_mode="batch"))
    return home


def circuit(**kw: object) -> JobDefn:
    return JobDefn(kind="circuit", site=str(kw.pop("site", "manila")),
                   entry={"qasm": GHZ3, "shots": 400, "seed": 7, **kw})


def test_ghz_runs_and_its_result_is_data_put_by_the_job(qhome: Path):
    with Manager(qhome) as m:
        job = m.wait(m.submit(circuit(name="ghz3")).id, timeout=120)
        assert job.state is State.COMPLETE, m.history(job.id)
        hist = m.history(job.id)
        assert "runtime job" in hist[1].info and "qiskit 2." in hist[1].info
        (res,) = m.find({"kind": "quantum_result"}, job_id=job.id)
        meta = res.metadata
        assert meta["runtime_job_id"] == job.context.native_id
        assert (meta["backend"], meta["shots"], meta["num_qubits"]) == ("fake_manila", 400, 3)
        assert meta["depth"] >= 4 and len(meta["qpy_sha256"]) == 64
        import hashlib
        assert meta["circuit_sha256"] == hashlib.sha256(GHZ3.encode()).hexdigest()
        doc = json.loads(local_path(res.url).read_text())
        assert sum(doc["counts"].values()) == 400
        assert doc["counts"].get("000", 0) + doc["counts"].get("111", 0) > 300  # a GHZ state
        assert abs(sum(doc["quasi_dist"].values()) - 1) < 1e-9
        (used,) = m.find({"kind": "circuit"}, job_id=job.id)
        assert used.direction.value == "get" and local_path(used.url).read_text() == GHZ3
        # selected by backend and by circuit, from Python and over SPARQL
        assert [d.id for d in m.find({"backend": "fake_manila"})] == [res.id]
        assert [d.id for d in m.find({"circuit_sha256": meta["circuit_sha256"],
                                      "kind": "quantum_result"})] == [res.id]
        rows = m.graph.select_values(
            "SELECT ?d ?job WHERE { ?d schema:additionalProperty ?p ; prov:wasGeneratedBy ?job ."
            " ?p schema:propertyID \"backend\" ; schema:value \"fake_manila\" }")
        assert rows == [(f"urn:uuid:{res.id}", f"urn:uuid:{job.id}")]
        by_circuit = m.graph.select_values(
            "SELECT ?d WHERE { ?d schema:additionalProperty ?p, ?k . ?p schema:propertyID "
            f"\"circuit_sha256\" ; schema:value \"{meta['circuit_sha256']}\" . ?k "
            "schema:propertyID \"kind\" ; schema:value \"quantum_result\" }")
        assert by_circuit == [(f"urn:uuid:{res.id}",)]


def test_cli_find_selects_results_by_backend(qhome: Path):
    with Manager(qhome) as m:
        for site in ("manila", "lima"):
            assert m.wait(m.submit(circuit(site=site)).id, timeout=120).state is State.COMPLETE
    env = {**os.environ, "LWFM_HOME": str(qhome)}
    out = subprocess.run([sys.executable, "-m", "lwfm.cli", "find", "backend=fake_lima", "--json"],
                         capture_output=True, text=True, env=env, check=True, timeout=120).stdout
    found = json.loads(out)
    assert [d["metadata"]["backend"] for d in found] == ["fake_lima"]
    assert found[0]["metadata"]["execution_mode"] == "batch"


def lwfm_cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LWFM_")}
    return subprocess.run([sys.executable, "-m", "lwfm.cli", *args], capture_output=True,
                          text=True, env={**env, "LWFM_HOME": str(home)}, timeout=300)


def test_cli_circuit_and_backends(qhome: Path, tmp_path: Path):
    qasm = tmp_path / "ghz.qasm"
    qasm.write_text(GHZ3)
    p = lwfm_cli(qhome, "circuit", "lima", str(qasm), "--shots", "300", "--seed", "3", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)      # local mode: it waited although --wait was not given
    assert out["state"] == "COMPLETE" and out["native_id"]
    (res,) = out["results"]
    assert res["metadata"]["backend"] == "fake_lima" and res["metadata"]["shots"] == 300
    est = lwfm_cli(qhome, "circuit", "manila", str(qasm), "--estimator", "ZZI", "--wait", "--json")
    assert est.returncode == 0, est.stderr
    assert json.loads(est.stdout)["results"][0]["metadata"]["primitive"] == "estimator"
    p = lwfm_cli(qhome, "backends", "manila", "--json")
    assert p.returncode == 0 and {"name": "fake_manila", "class": "FakeManilaV2", "qubits": 5,
                                  "status": "local"} in json.loads(p.stdout)
    src = tmp_path / "evil.qasm"
    src.write_text("import os; os.system('echo pwned')\n")
    before = lwfm_cli(qhome, "jobs", "--json").stdout
    p = lwfm_cli(qhome, "circuit", "manila", str(src))
    assert p.returncode == 1 and "never as Python source" in p.stderr and "pwned" not in p.stdout
    assert lwfm_cli(qhome, "jobs", "--json").stdout == before
    p = lwfm_cli(qhome, "backends", "local")
    assert p.returncode == 1 and "lists no quantum backends" in p.stderr


def test_circuit_from_a_qasm_data_object_links_the_thread(qhome: Path, tmp_path: Path):
    src = tmp_path / "ghz.qasm"
    src.write_text(GHZ3)
    with Manager(qhome) as m:
        wf = m.create_workflow("bench")
        c = m.put(src, str(tmp_path / "stored" / "ghz.qasm"), metadata={"kind": "qasm"})
        job = m.submit(JobDefn(kind="circuit", site="manila", entry={"data": c.id, "shots": 200}),
                       workflow_id=wf.id)
        assert m.wait(job.id, timeout=120).state is State.COMPLETE
        (res,) = m.find({"kind": "quantum_result"})
        assert res.derived_from == c.id and res.workflow_id == wf.id
        lin = m.graph.lineage(res.id)
        edges = {(a, b) for a, _, b in lin.edges}
        used = m.find({"kind": "circuit"}, job_id=job.id)[0]
        # result -> the job -> the circuit it used -> the .qasm data that was put
        assert {(res.id, job.id), (job.id, used.id), (used.id, c.id)} <= edges


def test_estimator_with_observables_on_qasm3(qhome: Path):
    bell3 = ('OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[2] q;\nh q[0];\ncx q[0], q[1];\n')
    with Manager(qhome) as m:
        job = m.submit(JobDefn(kind="circuit", site="manila", entry={
            "qasm": bell3, "primitive": "estimator", "shots": 2000,
            "observables": ["ZZ", [["XX", 0.5], ["ZI", 0.5]]]}))
        assert m.wait(job.id, timeout=120).state is State.COMPLETE
        (res,) = m.find({"kind": "quantum_result"})
        doc = json.loads(local_path(res.url).read_text())
        assert doc["evs"][0] > 0.8 and abs(doc["evs"][1] - 0.5) < 0.2 and len(doc["stds"]) == 2
        assert res.metadata["primitive"] == "estimator"


def test_a_circuit_sent_as_qpy(qhome: Path):
    import base64
    import hashlib
    import io
    from qiskit import QuantumCircuit, qpy
    qc = QuantumCircuit(2, 2)
    qc.h(0)
    qc.cx(0, 1)
    qc.measure([0, 1], [0, 1])
    buf = io.BytesIO()
    qpy.dump(qc, buf)
    with Manager(qhome) as m:
        job = m.submit(JobDefn(kind="circuit", site="manila", entry={
            "qpy": base64.b64encode(buf.getvalue()).decode(), "shots": 100}))
        assert m.wait(job.id, timeout=120).state is State.COMPLETE
        (res,) = m.find({"kind": "quantum_result"})
        assert res.metadata["circuit_sha256"] == hashlib.sha256(buf.getvalue()).hexdigest()
        assert res.metadata["num_qubits"] == 2


@pytest.mark.parametrize("entry, says", [
    ({"qasm": "import os\nos.system('true')"}, "never as Python source"),
    ({"qasm": GHZ3, "shots": 0}, "shots"),
    ({"qasm": GHZ3, "primitive": "annealer"}, "primitive"),
    ({"qasm": GHZ3, "primitive": "estimator"}, "observables"),
    ({"qasm": GHZ3, "primitive": "estimator", "observables": ["ZQ"]}, "Pauli"),
    ({"qasm": GHZ3, "qpy": "AAAA"}, "once"),
    ({"qasm": GHZ3, "exec": "x"}, "unknown key"),
    ({"qpy": "not base64!"}, "base64"),
    ({"data": "00000000-0000-4000-8000-000000000000"}, "no data"),
])
def test_bad_circuit_jobs_are_refused_and_leave_the_store_unchanged(qhome: Path, entry, says):
    with Manager(qhome) as m:
        with pytest.raises(LwfmError) as e:   # InvalidInput, or NotFound for the data id
            m.submit(JobDefn(kind="circuit", site="manila", entry=entry))
        assert says.lower() in str(e.value).lower()
        assert m.store.find_jobs() == [] and m.find() == []


def test_failed_transpile_and_unknown_backend_are_clear_errors(home: Path):
    (home / "lwfm.toml").write_text(toml_site("manila", "FakeManilaV2")
                                    + toml_site("nowhere", "FakeNoSuchBackendV2"))
    big = ('OPENQASM 2.0; include "qelib1.inc"; qreg q[7]; creg c[7]; h q[0]; '
           'cx q[0],q[6]; measure q -> c;')
    with Manager(home) as m:
        with pytest.raises(SiteError, match="needs 7 qubits; backend fake_manila has 5"):
            m.submit(JobDefn(kind="circuit", site="manila", entry={"qasm": big}))
        with pytest.raises(SiteError, match="unknown fake backend 'FakeNoSuchBackendV2'.*FakeManilaV2"):
            m.submit(circuit(site="nowhere"))
        jobs = m.store.find_jobs()
        assert {j.state for j in jobs} == {State.FAILED} and len(jobs) == 2
        assert "needs 7 qubits" in m.history(jobs[0].id)[-1].info + m.history(jobs[1].id)[-1].info


def test_only_circuit_jobs_run_there_and_circuits_nowhere_else(qhome: Path):
    with Manager(qhome) as m:
        with pytest.raises(NotSupported, match="runs circuit jobs"):
            m.submit(JobDefn(entry=["true"], site="manila"))
        with pytest.raises(NotSupported):
            m.wait(m.submit(JobDefn(kind=EntryKind.CIRCUIT, entry={"qasm": GHZ3})).id, timeout=30)
    with pytest.raises(InvalidInput, match="circuit job's entry is a table"):
        JobDefn(kind="circuit", entry="OPENQASM 2.0;")


def watcher_done(m: Manager, job_id: str, timeout: float = 120) -> None:
    """Until the site's watcher has let go of the job (its end, or its result, recorded)."""
    import time
    deadline = time.monotonic() + timeout
    while m.site("manila").run.supervises(job_id):
        assert time.monotonic() < deadline, "the watcher still holds the job"
        time.sleep(0.05)
    m.flush()


def test_cancel_a_running_circuit(qhome: Path):
    """A local-mode job already simulating cannot be interrupted: it is recorded
    CANCELLED and its result is never read nor recorded."""
    wide = ('OPENQASM 2.0; include "qelib1.inc"; qreg q[5]; creg c[5]; '
            + " ".join(f"h q[{i}]; cx q[{i}],q[{(i + 1) % 5}];" for i in range(5)) * 40
            + " measure q -> c;")
    with Manager(qhome) as m:
        job = m.submit(JobDefn(kind="circuit", site="manila",
                               entry={"qasm": wide, "shots": 200000, "optimization_level": 0}))
        assert m.cancel(job.id) is True
        job = m.wait(job.id, timeout=120)
        assert job.state is State.CANCELLED
        watcher_done(m, job.id)
        assert m.find({"kind": "quantum_result"}) == []
        assert m.cancel(job.id) is False


def test_cancel_from_another_process(qhome: Path):
    """``lwfm cancel`` in a shell while this process runs the local-mode job."""
    wide = ('OPENQASM 2.0; include "qelib1.inc"; qreg q[5]; creg c[5]; '
            + " ".join(f"h q[{i}]; cx q[{i}],q[{(i + 1) % 5}];" for i in range(5)) * 40
            + " measure q -> c;")
    with Manager(qhome) as m:
        job = m.submit(JobDefn(kind="circuit", site="manila",
                               entry={"qasm": wide, "shots": 400000, "optimization_level": 0}))
        p = lwfm_cli(qhome, "cancel", job.id)
        assert p.returncode == 0, p.stderr
        job = m.wait(job.id, timeout=120)
        assert job.state is State.CANCELLED
        watcher_done(m, job.id)
        assert m.find({"kind": "quantum_result"}) == []
        hist = m.history(job.id)
        assert "cancelled by user" in [s.info for s in hist]
        assert "CANCELLED" in [s.native_state for s in hist]   # the submitter's watcher saw it


def test_spin_lists_the_fake_backends(qhome: Path):
    with Manager(qhome) as m:
        backends = {b["name"]: b for b in m.site("manila").spin.backends()}
        assert backends["fake_manila"]["qubits"] == 5 and backends["fake_manila"]["status"] == "local"
        assert len(backends) > 20 and backends["fake_sherbrooke"]["qubits"] == 127
        assert m.site("manila").auth.is_current()
        m.site("manila").auth.login()   # local mode: nothing to log in to, no error


def test_the_token_never_reaches_config_store_graph_or_logs(home: Path, monkeypatch):
    secret = "tok-3f9c2a7d5e1b-never-record-me"
    monkeypatch.setenv("QISKIT_IBM_TOKEN", secret)
    (home / "lwfm.toml").write_text(toml_site("manila", "FakeManilaV2"))
    with Manager(home) as m:
        job = m.wait(m.submit(circuit()).id, timeout=120)
        assert job.state is State.COMPLETE
        nt = m.graph.ox.dump(format=__import__("pyoxigraph").RdfFormat.N_QUADS)
        assert secret.encode() not in nt
    for f in home.rglob("*"):
        if f.is_file():
            assert secret.encode() not in f.read_bytes(), f
    (home / "lwfm.toml").write_text(toml_site("manila", "FakeManilaV2", token=secret))
    with Manager(home) as m:
        with pytest.raises(ConfigError, match="must not hold the token"):
            m.site("manila")
