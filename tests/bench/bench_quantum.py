"""Quantum benchmark: small circuits on one fake backend through lwfm's ``ibm_quantum``
site, against qiskit-ibm-runtime's local mode called directly on the same circuits.

Run: ``python tests/bench/bench_quantum.py [--circuits N] [--reps R]``. Offline: the
fake backend (FakeManilaV2) runs in local mode with qiskit-aer. Human-readable lines
first, then ONE JSON object on the last line; goals are reported, never asserted;
correctness (every job COMPLETE with its result recorded) is asserted.

* ``direct_circuits_per_s``: each circuit loaded from its OpenQASM text, transpiled for
  the backend and started with the runtime Sampler, then every result read.
* ``circuits_per_s``: the same circuits as ``kind="circuit"`` jobs, submitted one by one
  through ``Manager.submit`` to an in-process ``ibm_quantum`` site and waited for with
  ``wait_all`` (records: each job, its statuses, the circuit it used, its result JSON).
* ``vs_direct``: median of per-repetition ratios (direct and lwfm run interleaved, one
  of each per repetition, on a fresh home each): goal >= 0.8.
* ``sandbox_circuits_per_s``: the lwfm run with the site's calls in a venv sandbox
  (its worker process), once.
* ``sandbox_call_overhead_ms``: median time of one call into the sandbox kernel
  (``noop``) minus that of the same call in process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))   # tests._quantum (the cached sandbox venvs)

from lwfm import JobDefn, Manager, State  # noqa: E402
from tests._quantum import cache_dir  # noqa: E402

BACKEND = "FakeManilaV2"
SHOTS = 256
GOALS = {"vs_direct": 0.8}


def circuits(n: int) -> list[str]:
    """n small circuits (2 to 5 qubits): a rotated GHZ ladder, each one different."""
    out = []
    for i in range(n):
        k = 2 + i % 4
        body = f"ry({0.05 * i:.4f}) q[0];\n" + "".join(f"cx q[{j}],q[{j + 1}];\n" for j in range(k - 1))
        out.append(f'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[{k}];\ncreg c[{k}];\n'
                   f"h q[0];\n{body}measure q -> c;\n")
    return out


def run_direct(qasms: list[str]) -> float:
    """qiskit-ibm-runtime local mode, called directly: circuits per second."""
    from qiskit import qasm2, transpile
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2
    try:
        from qiskit_ibm_runtime.executor_sampler import Sampler
    except ImportError:
        from qiskit_ibm_runtime import SamplerV2 as Sampler
    backend = FakeManilaV2()
    t0 = time.perf_counter()
    jobs = []
    for q in qasms:
        tq = transpile(qasm2.loads(q), backend=backend, optimization_level=1, seed_transpiler=7)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            jobs.append(Sampler(mode=backend).run([tq], shots=SHOTS))
    counts = [j.result()[0].data.c.get_counts() for j in jobs]
    dt = time.perf_counter() - t0
    assert all(sum(c.values()) == SHOTS for c in counts)
    return len(qasms) / dt


def write_config(home: Path, sandbox: dict | None) -> None:
    text = f'[sites.fake]\ndriver = "ibm_quantum"\nbackend = "{BACKEND}"\n'
    if sandbox:
        text += "".join(f"{k} = {json.dumps(v)}\n" for k, v in sandbox.items())
    (home / "lwfm.toml").write_text(text)


def run_lwfm(qasms: list[str], home: Path, sandbox: dict | None = None) -> float:
    """The same circuits as lwfm circuit jobs: circuits per second (site warm)."""
    home.mkdir(parents=True)
    write_config(home, sandbox)
    with Manager(home) as m:
        warm = m.submit(JobDefn(kind="circuit", site="fake", entry={"qasm": qasms[0], "shots": 8}))
        m.wait(warm.id, timeout=600)     # the site and its kernel (or sandbox worker) up
        t0 = time.perf_counter()
        ids = [m.submit(JobDefn(kind="circuit", site="fake", entry={
            "qasm": q, "shots": SHOTS, "seed": 7, "optimization_level": 1})).id for q in qasms]
        jobs = m.wait_all(ids, timeout=600)
        dt = time.perf_counter() - t0
        assert all(j.state is State.COMPLETE for j in jobs), [j.state for j in jobs]
        assert len(m.find({"kind": "quantum_result"})) == len(qasms) + 1
    return len(qasms) / dt


def call_overhead_ms(home: Path, sandbox: dict, calls: int = 300) -> float:
    home.mkdir(parents=True)
    write_config(home, sandbox)
    with Manager(home) as m:
        boxed = m.site("fake").kernel
        boxed.call("noop")
        from lwfm.sites._qkernel.lwfm_qkernel import QuantumKernel
        local = QuantumKernel(BACKEND)

        def median_ms(fn) -> float:
            ts = []
            for _ in range(calls):
                t = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t)
            return statistics.median(ts) * 1000
        return median_ms(lambda: boxed.call("noop")) - median_ms(local.noop)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--circuits", type=int, default=100)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    qasms = circuits(a.circuits)
    root = Path(tempfile.mkdtemp(prefix="lwfm-bench-quantum-"))
    for v in ("LWFM_JOB_ID", "LWFM_WORKFLOW_ID", "LWFM_PARENT_ID", "LWFM_STORE_URL"):
        os.environ.pop(v, None)
    run_direct(qasms[:4])                       # imports and first transpile, both sides
    direct, lwfm, ratios = [], [], []
    for r in range(a.reps):
        d = run_direct(qasms)
        w = run_lwfm(qasms, root / f"rep{r}")
        direct.append(d)
        lwfm.append(w)
        ratios.append(w / d)
        print(f"rep {r}: direct {d:.1f}/s  lwfm {w:.1f}/s  ratio {w / d:.3f}")
    sandbox = {"requirements": [f"{d}=={version(d)}" for d in
                                ("qiskit", "qiskit-ibm-runtime", "qiskit-aer")],
               "system_site_packages": True,
               "venv_dir": str(cache_dir() / "quantum-venvs" / "qiskit2")}
    boxed = run_lwfm(qasms, root / "sandbox", sandbox)
    overhead = call_overhead_ms(root / "overhead", sandbox)
    out = {"circuits": a.circuits, "reps": a.reps, "backend": BACKEND, "shots": SHOTS,
           "circuits_per_s": round(statistics.median(lwfm), 1),
           "direct_circuits_per_s": round(statistics.median(direct), 1),
           "vs_direct": round(statistics.median(ratios), 3),
           "sandbox_circuits_per_s": round(boxed, 1),
           "sandbox_call_overhead_ms": round(overhead, 3),
           "goals": GOALS, "loadavg": os.getloadavg()[0]}
    print(f"lwfm {out['circuits_per_s']}/s, direct {out['direct_circuits_per_s']}/s, "
          f"vs_direct {out['vs_direct']} (goal >= 0.8); sandbox {out['sandbox_circuits_per_s']}/s, "
          f"call overhead {out['sandbox_call_overhead_ms']} ms")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
