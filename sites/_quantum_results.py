"""A circuit job's records: the circuit it used and the result it produced.

The result is one JSON file (counts and quasi-distribution, or expectation values) put
by the job, whose metadata carry what a later query selects on: the backend, shots,
qubit count, depth after transpilation, the sha256 of the input circuit and of the
transpiled circuit as QPY, and the sandbox with its package versions.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lwfm.files import sha256_file
from lwfm.model import DataObject, Direction

from ._quantum_payload import Circuit

RESULT_KIND = "quantum_result"
CIRCUIT_KIND = "circuit"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def used_circuit(job_id: str, circuit: Circuit, job_dir: Path) -> DataObject:
    """The record that the job used its circuit: the .qasm data it named (a get of that
    file, derived from its record), or the inline text kept next to the result."""
    meta = {"kind": CIRCUIT_KIND, "circuit_sha256": circuit.circuit_sha256}
    src = circuit.source
    if src is not None:
        return DataObject(url=src.url, site=src.site, direction=Direction.GET, size=src.size,
                          sha256=src.sha256, media_type=src.media_type, job_id=job_id,
                          derived_from=src.id, metadata=meta)
    name, text = ("circuit.qasm", circuit.text) if circuit.text is not None else \
        ("circuit.qpy.b64", circuit.request["qpy"])
    path = job_dir / name
    _write(path, text or "")
    return DataObject(url=path.as_uri(), site="local", direction=Direction.GET,
                      size=path.stat().st_size, sha256=sha256_file(path),
                      media_type="text/plain", job_id=job_id, metadata=meta)


def result_object(job_id: str, name: str, circuit: Circuit, info: dict[str, Any],
                  where: dict[str, Any], result: dict[str, Any], job_dir: Path) -> DataObject:
    """Write the result JSON and return its record (a put by the job)."""
    versions = where.get("versions", {})
    meta: dict[str, Any] = {
        "kind": RESULT_KIND, "circuit_name": name, "backend": info["backend"],
        "shots": info["shots"], "primitive": info["primitive"],
        "num_qubits": info["num_qubits"], "depth": info["depth"],
        "circuit_sha256": circuit.circuit_sha256, "qpy_sha256": info["qpy_sha256"],
        "runtime_job_id": info["runtime_job_id"], "execution_mode": info["execution_mode"],
        "sandbox": where.get("sandbox", "host"), "python": versions.get("python"),
        "qiskit": versions.get("qiskit"), "qiskit_ibm_runtime": versions.get("qiskit-ibm-runtime"),
        "qiskit_aer": versions.get("qiskit-aer"),
    }
    doc = {"job_id": job_id, **meta, "transpiled_qubits": info.get("transpiled_qubits"),
           "optimization_level": circuit.request.get("optimization_level"),
           "seed": circuit.request.get("seed"), **result}
    path = job_dir / "result.json"
    _write(path, json.dumps(doc, sort_keys=True, indent=1))
    return DataObject(url=path.as_uri(), site="local", direction=Direction.PUT,
                      size=path.stat().st_size, sha256=sha256_file(path),
                      media_type="application/json", job_id=job_id,
                      derived_from=circuit.source.id if circuit.source else None, metadata=meta)
