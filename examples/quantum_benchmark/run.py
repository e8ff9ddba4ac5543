"""One GHZ circuit on three fake IBM backends spread over two qiskit sandboxes, then a
comparison job triggered by the join of the three runs.

Sites (written to $LWFM_HOME/lwfm.toml when it has none, see ``site_config``):
``q2-manila`` and ``q2-lima`` run in a venv pinned to this host's qiskit 2.x line,
``q1-belem`` in a venv pinned to qiskit 1.2.4 (built from PyPI on first use, ~1 min).
The circuit is put once as a .qasm data object; each run names it by id, so the
OpenQASM text is what moves between the sandboxes. ``compare:main`` (a python job on
the local site) reads the three results, computes the Hellinger fidelity of each to
the ideal GHZ distribution, and records a table and a PNG plot as data. The thread
then links circuit -> runs -> results -> comparison.

Runs offline: the fakes run in qiskit-ibm-runtime's local mode with qiskit-aer.
Usage: python run.py   ($LWFM_HOME or a fresh temporary home; $LWFM_QUANTUM_VENVS: where
the two venvs are built, default the home's venvs/). Prints one JSON object, then OK.
"""

from __future__ import annotations

import json
import os
import tempfile
from importlib.metadata import version
from pathlib import Path

from lwfm import JobDefn, Manager, State

HERE = Path(__file__).resolve().parent
QISKIT1 = ["qiskit==1.2.4", "qiskit-ibm-runtime==0.29.0", "qiskit-aer==0.15.1"]
SITES = {"q2-manila": ("FakeManilaV2", "qiskit2"), "q2-lima": ("FakeLimaV2", "qiskit2"),
         "q1-belem": ("FakeBelemV2", "qiskit1")}


def site_config(venvs: Path) -> str:
    """Three ibm_quantum sites over two sandboxes (the 2.x one sees the host's packages
    beneath its own pins, so it installs nothing new)."""
    pins2 = [f"{d}=={version(d)}" for d in ("qiskit", "qiskit-ibm-runtime", "qiskit-aer")]
    out = []
    for name, (backend, sandbox) in SITES.items():
        reqs, system = (QISKIT1, False) if sandbox == "qiskit1" else (pins2, True)
        out.append(f'[sites.{name}]\ndriver = "ibm_quantum"\nbackend = "{backend}"\n'
                   f'execution_mode = "batch"\nrequirements = {json.dumps(reqs)}\n'
                   f'venv_dir = "{venvs / sandbox}"\n'
                   f'system_site_packages = {"true" if system else "false"}\n')
    return "\n".join(out)


def main() -> dict:
    home = Path(os.environ.get("LWFM_HOME") or tempfile.mkdtemp(prefix="lwfm-quantum-"))
    home.mkdir(parents=True, exist_ok=True)
    venvs = Path(os.environ.get("LWFM_QUANTUM_VENVS") or home / "venvs")
    if not (home / "lwfm.toml").exists():
        (home / "lwfm.toml").write_text(site_config(venvs))
    with Manager(home) as m:
        wf = m.create_workflow("quantum-benchmark", "GHZ-3 on three fake backends, two sandboxes")
        circuit = m.put(HERE / "ghz3.qasm", str(home / "circuits" / "ghz3.qasm"),
                        metadata={"kind": "qasm", "name": "ghz3"})
        runs = [m.submit(JobDefn(kind="circuit", site=site, name=f"ghz3 on {site}",
                                 entry={"data": circuit.id, "shots": 4000, "seed": 11,
                                        "optimization_level": 1}), workflow_id=wf.id)
                for site in SITES]
        out_dir = home / "quantum-benchmark" / wf.id
        join = m.on_all([r.id for r in runs], JobDefn(
            kind="python", entry="compare:main", cwd=str(HERE), name="compare",
            args=[str(out_dir), *[r.id for r in runs]]))
        done = m.wait(join.job_id, timeout=900)
        ended = [m.status(r.id) for r in runs]
        if done.state is not State.COMPLETE or any(j.state is not State.COMPLETE for j in ended):
            raise SystemExit(f"runs {[j.state.value for j in ended]}, compare {done.state.value}: "
                             f"{[m.history(j.id)[-1].info for j in ended]} {m.log(done.id)}")
        table = json.loads(m.log(done.id).strip().splitlines()[-1])
        outputs = {d.metadata["format"]: d.url for d in m.find({"kind": "comparison"},
                                                              job_id=done.id)}
        sandboxes = {r["site"]: r["qiskit"] for r in table["rows"]}
    return {"workflow_id": wf.id, "circuit_id": circuit.id, "runs": [r.id for r in runs],
            "compare_job": done.id, "rows": table["rows"], "outputs": outputs,
            "qiskit_by_site": sandboxes}


if __name__ == "__main__":
    res = main()
    for r in res["rows"]:
        print(f"{r['site']:<10} {r['backend']:<12} qiskit {r['qiskit']:<7} depth {r['depth']:<3} "
              f"fidelity {r['fidelity']:.4f}")
    print(json.dumps(res))
    print("OK")
