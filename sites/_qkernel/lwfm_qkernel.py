"""The part of the ``ibm_quantum`` site that calls qiskit: load, transpile, run, read.

Imports only the standard library and qiskit (with qiskit-ibm-runtime), never lwfm, so
the same file runs in lwfm's own interpreter and inside a venv sandbox pinned to another
qiskit line, where the venv site's worker calls it (``VenvSite.call``). Every method
takes and returns plain JSON. Circuits arrive as OpenQASM 2/3 text or QPY (base64),
never as Python source: nothing received is evaluated.

The IBM Quantum token is read here, from the environment (``token_env``), or
qiskit-ibm-runtime's saved account is used: it is never an argument, so it is never in a
request line, a log or a record. Fake backends (``FakeManilaV2`` or ``fake_manila``)
run in qiskit-ibm-runtime's local mode and need no account.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import io
import math
import os
import sys
import threading
import warnings
from typing import Any

DISTRIBUTIONS = ("qiskit", "qiskit-ibm-runtime", "qiskit-aer", "qiskit-qasm3-import")
EXECUTION_MODES = ("job", "batch", "session")


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": sys.version.split()[0]}
    for d in DISTRIBUTIONS:
        try:
            out[d] = importlib.metadata.version(d)
        except importlib.metadata.PackageNotFoundError:
            out[d] = None
    return out


def _fakes() -> dict[str, Any]:
    """The fake backends (BackendV2: what the runtime primitives take) by class name."""
    from qiskit_ibm_runtime import fake_provider
    from qiskit_ibm_runtime.fake_provider.fake_backend import FakeBackendV2
    out: dict[str, Any] = {}
    for name in dir(fake_provider):
        cls = getattr(fake_provider, name)
        if name.startswith("Fake") and isinstance(cls, type) and issubclass(cls, FakeBackendV2) \
                and hasattr(cls, "conf_filename"):
            out[name] = cls
    return out


def is_fake(name: str) -> bool:
    return name.lower().startswith("fake")


def load_circuit(qasm: str | None = None, qpy_b64: str | None = None) -> Any:
    """A QuantumCircuit from OpenQASM 2 or 3 text, or from QPY bytes (base64)."""
    if qpy_b64 is not None:
        from qiskit import qpy
        circuits = qpy.load(io.BytesIO(base64.b64decode(qpy_b64, validate=True)))
        if len(circuits) != 1:
            raise ValueError(f"the QPY payload holds {len(circuits)} circuits; send one per job")
        return circuits[0]
    text = (qasm or "").lstrip()
    head = text[:40]
    if text.startswith("OPENQASM 3"):
        from qiskit import qasm3
        try:
            return qasm3.loads(text)
        except ImportError:
            raise ValueError("OpenQASM 3 needs the qiskit-qasm3-import package in this "
                             "interpreter; add it to the site's requirements") from None
    if text.startswith("OPENQASM 2"):
        from qiskit import qasm2
        return qasm2.loads(text)
    raise ValueError(f"the circuit is not OpenQASM 2 or 3 text (it starts {head!r}); "
                     "lwfm takes circuits as OpenQASM or QPY, never as Python source")


def qpy_bytes(circuit: Any) -> bytes:
    from qiskit import qpy
    buf = io.BytesIO()
    qpy.dump(circuit, buf)
    return buf.getvalue()


def _state_name(status: Any) -> str:
    """A runtime job's status as one upper-case word (an enum in local mode, a string
    from the service)."""
    name = getattr(status, "name", None) or str(status)
    return name.rsplit(".", 1)[-1].upper()


class QuantumKernel:
    """One backend, its runtime jobs, and (``execution_mode``) the Batch or Session
    they are grouped in."""

    def __init__(self, backend: str, channel: str | None = None, instance: str | None = None,
                 token_env: str = "QISKIT_IBM_TOKEN", execution_mode: str = "job") -> None:
        if execution_mode not in EXECUTION_MODES:
            raise ValueError(f"execution_mode must be one of {EXECUTION_MODES}, "
                             f"not {execution_mode!r}")
        self.backend_name = backend
        self.channel = channel
        self.instance = instance
        self.token_env = token_env
        self.execution_mode = execution_mode
        self._backend: Any = None
        self._service: Any = None
        self._group: Any = None
        self._jobs: dict[str, Any] = {}
        self._cancelled: set[str] = set()
        self._info: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    # -- backends ---------------------------------------------------------------------
    def _runtime_service(self) -> Any:
        if self._service is None:
            from qiskit_ibm_runtime import QiskitRuntimeService
            token = os.environ.get(self.token_env) or None   # else: the saved account
            kw = {k: v for k, v in (("channel", self.channel), ("instance", self.instance),
                                    ("token", token)) if v}
            self._service = QiskitRuntimeService(**kw)
        return self._service

    def backend(self) -> Any:
        if self._backend is None:
            name = self.backend_name
            if is_fake(name):
                fakes = _fakes()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    cls = fakes.get(name) or next(
                        (c for c in fakes.values() if c().name == name), None)
                if cls is None:
                    raise ValueError(f"unknown fake backend {name!r}; this qiskit-ibm-runtime "
                                     f"has: {', '.join(sorted(fakes))}")
                self._backend = cls()
            else:
                try:
                    self._backend = self._runtime_service().backend(name)
                except Exception as e:  # the service's own error names the cause
                    raise ValueError(f"unknown or unreachable backend {name!r}: {e}") from None
        return self._backend

    def backends(self) -> list[dict[str, Any]]:
        """Name, qubits and status of each backend: the fakes in local mode."""
        if is_fake(self.backend_name):
            out = []
            for cls_name, cls in sorted(_fakes().items()):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    b = cls()
                out.append({"name": b.name, "class": cls_name, "qubits": b.num_qubits,
                            "status": "local"})
            return out
        out = []
        for b in self._runtime_service().backends():
            st = b.status()
            out.append({"name": b.name, "qubits": b.num_qubits,
                        "status": "online" if st.operational else "offline",
                        "pending_jobs": st.pending_jobs})
        return out

    def describe(self) -> dict[str, Any]:
        """Where these calls run (the sandbox) and with which package versions."""
        return {"prefix": sys.prefix, "executable": sys.executable, "pid": os.getpid(),
                "versions": versions(), "backend": self.backend_name,
                "local": is_fake(self.backend_name)}

    def noop(self) -> None:
        """Nothing: measures the cost of one call into the sandbox."""
        return None

    # -- runs -------------------------------------------------------------------------
    def _mode(self) -> Any:
        if self.execution_mode == "job":
            return self.backend()
        if self._group is None:
            from qiskit_ibm_runtime import Batch, Session
            cls = Batch if self.execution_mode == "batch" else Session
            self._group = cls(backend=self.backend())
        return self._group

    @staticmethod
    def _primitive(kind: str, mode: Any) -> Any:
        """The current primitives where this qiskit-ibm-runtime has them (0.50+: the
        executor-based ones), else SamplerV2/EstimatorV2 of the older line."""
        if kind == "sampler":
            try:
                from qiskit_ibm_runtime.executor_sampler import Sampler
            except ImportError:
                from qiskit_ibm_runtime import SamplerV2 as Sampler
            return Sampler(mode=mode)
        try:
            from qiskit_ibm_runtime.executor_estimator import Estimator
        except ImportError:
            from qiskit_ibm_runtime import EstimatorV2 as Estimator
        return Estimator(mode=mode)

    def submit(self, circuit: dict[str, Any]) -> dict[str, Any]:
        """Transpile one circuit for the backend and start it; what was run, with the
        runtime job id. ``circuit``: qasm or qpy, shots, primitive, observables,
        optimization_level, seed."""
        from qiskit import transpile
        qc = load_circuit(circuit.get("qasm"), circuit.get("qpy"))
        primitive = circuit.get("primitive", "sampler")
        backend = self.backend()
        if primitive == "estimator":
            qc = qc.remove_final_measurements(inplace=False)
        elif qc.num_clbits == 0:
            raise ValueError("a sampler circuit measures nothing (it has no classical bits); "
                             "add measurements or use the estimator with observables")
        if qc.num_qubits > backend.num_qubits:
            raise ValueError(f"the circuit needs {qc.num_qubits} qubits; backend "
                             f"{backend.name} has {backend.num_qubits}")
        try:
            tq = transpile(qc, backend=backend,
                           optimization_level=circuit.get("optimization_level", 1),
                           seed_transpiler=circuit.get("seed"))
        except Exception as e:
            raise ValueError(f"transpiling for {backend.name} failed: {type(e).__name__}: {e}") from None
        shots = int(circuit.get("shots", 1024))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            prim = self._primitive(primitive, self._mode())
            if primitive == "estimator":
                from qiskit.quantum_info import SparsePauliOp
                obs = [SparsePauliOp.from_list([(o, 1.0)] if isinstance(o, str) else
                                               [(str(p), float(c)) for p, c in o])
                       .apply_layout(tq.layout) for o in circuit["observables"]]
                job = prim.run([(tq, obs)], precision=1 / math.sqrt(shots))
            else:
                job = prim.run([tq], shots=shots)
        job_id = job.job_id()
        qpy_raw = qpy_bytes(tq)
        info = {"runtime_job_id": job_id, "backend": backend.name, "shots": shots,
                "primitive": primitive, "num_qubits": qc.num_qubits,
                "transpiled_qubits": tq.num_qubits, "depth": tq.depth(),
                "qpy_sha256": hashlib.sha256(qpy_raw).hexdigest(),
                "execution_mode": self.execution_mode, "local": is_fake(self.backend_name)}
        with self._lock:
            self._jobs[job_id] = job
            self._info[job_id] = info
        return info

    def _job(self, job_id: str) -> Any:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None and not is_fake(self.backend_name):
            job = self._runtime_service().job(job_id)   # started elsewhere: ask the service
        return job

    def poll(self, job_ids: list[str]) -> dict[str, str]:
        """The native state of each job (one call for many: a sandbox round trip each)."""
        out = {}
        for jid in job_ids:
            if jid in self._cancelled:
                out[jid] = "CANCELLED"
                continue
            job = self._job(jid)
            out[jid] = "UNKNOWN" if job is None else _state_name(job.status())
        return out

    def result(self, job_id: str) -> dict[str, Any]:
        """The job's result as JSON: counts and quasi-distribution (sampler) or
        expectation values with their standard errors (estimator)."""
        job = self._job(job_id)
        if job is None:
            raise ValueError(f"no runtime job {job_id!r} here (local-mode jobs live only "
                             "in the process that started them)")
        try:
            res = job.result()
        except Exception as e:
            raise ValueError(f"runtime job {job_id} failed: {type(e).__name__}: {e}") from None
        info = self._info.get(job_id, {})
        pub = res[0]
        if info.get("primitive", "sampler") == "estimator":
            evs, stds = pub.data.evs, pub.data.stds
            return {"evs": [float(x) for x in evs.ravel()],
                    "stds": [float(x) for x in stds.ravel()]}
        registers = {}
        for name in pub.data.keys() if hasattr(pub.data, "keys") else []:
            reg = getattr(pub.data, name)
            if hasattr(reg, "get_counts"):
                registers[name] = reg.get_counts()
        counts = pub.join_data().get_counts() if hasattr(pub, "join_data") and \
            len(registers) > 1 else next(iter(registers.values()), {})
        shots = sum(counts.values()) or 1
        return {"counts": counts, "quasi_dist": {k: v / shots for k, v in counts.items()},
                "registers": registers}

    def cancel(self, job_id: str) -> bool:
        """Stop the job; True if it had not ended. A local-mode job already simulating
        cannot be interrupted: it is marked cancelled and its result is never read."""
        job = self._job(job_id)
        if job is None:
            return False
        state = _state_name(job.status())
        if state in ("DONE", "ERROR", "CANCELLED") or job_id in self._cancelled:
            return False
        try:
            job.cancel()
        except Exception:  # a local job past its queue cannot be stopped; it is dropped
            if not is_fake(self.backend_name):
                raise
        self._cancelled.add(job_id)
        return True

    def forget(self, job_ids: list[str]) -> None:
        """Drop ended jobs this kernel no longer needs to answer for."""
        with self._lock:
            for jid in job_ids:
                self._jobs.pop(jid, None)
                self._info.pop(jid, None)
                self._cancelled.discard(jid)

    def close(self) -> None:
        g, self._group = self._group, None
        if g is not None:
            g.close()
