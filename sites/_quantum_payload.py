"""A circuit job's entry, checked before anything runs or is recorded as started.

``JobDefn(kind="circuit", entry={...})`` names the circuit (OpenQASM 2/3 text in
``qasm``, QPY bytes as base64 in ``qpy``, or the id of a recorded .qasm file in
``data``) and how to run it. Checked here, on the host, so a malformed request is a
clear InvalidInput at submit whichever sandbox would have run it; the circuit itself is
parsed by qiskit in the kernel (a bad QASM is the transpile step's clear error).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Any, Callable

from lwfm.errors import ChecksumMismatch, InvalidInput
from lwfm.files import local_path, sha256_file
from lwfm.model import DataObject

KEYS = {"qasm", "qpy", "data", "name", "shots", "primitive", "observables",
        "optimization_level", "seed"}
PRIMITIVES = ("sampler", "estimator")
MAX_SHOTS = 10_000_000


@dataclass
class Circuit:
    """What the kernel is asked to run, and what the record says about its input."""

    request: dict[str, Any]          # the kernel's submit argument (plain JSON)
    circuit_sha256: str              # of the QASM text as given (or of the QPY bytes)
    source: DataObject | None        # the recorded .qasm file it came from, if any
    text: str | None                 # the QASM text (None for QPY)


def _int(entry: dict[str, Any], key: str, default: int | None, lo: int, hi: int) -> int | None:
    v = entry.get(key, default)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise InvalidInput(f"a circuit job's {key} must be a whole number from {lo} to {hi}, "
                           f"not {v!r}")
    return v


def _observables(obs: Any) -> list[Any]:
    """Pauli strings ("ZZI") or sums of weighted ones ([["XX", 0.5], ["ZI", 0.5]])."""
    if not isinstance(obs, list) or not obs:
        raise InvalidInput("an estimator job needs observables: a list of Pauli strings "
                           "such as [\"ZZI\"] or of [[\"XX\", 0.5], ...] sums")
    for o in obs:
        terms = [[o, 1.0]] if isinstance(o, str) else o
        if not isinstance(terms, list) or not terms or not all(
                isinstance(t, list) and len(t) == 2 and isinstance(t[0], str) and t[0]
                and set(t[0]) <= set("IXYZ") and isinstance(t[1], (int, float))
                and not isinstance(t[1], bool) for t in terms):
            raise InvalidInput(f"observable {o!r} is not a Pauli string (of I, X, Y, Z) or "
                               "a list of [pauli, coefficient] pairs")
    return obs


def _read_source(data_id: Any, lookup: Callable[[str], DataObject]) -> tuple[str, DataObject]:
    if not isinstance(data_id, str) or not data_id:
        raise InvalidInput(f"a circuit job's data must be a data object id, not {data_id!r}")
    d = lookup(data_id)                       # NotFound names the id
    if d.site != "local":
        raise InvalidInput(f"data {data_id} is on site {d.site!r}; a circuit job reads a "
                           "local .qasm file (get it here first)")
    path = local_path(d.url)
    if not path.is_file():
        raise InvalidInput(f"data {data_id}: its file {path} is gone")
    if d.sha256 and sha256_file(path) != d.sha256:
        raise ChecksumMismatch(f"data {data_id}: {path} changed since it was recorded "
                               f"(sha256 differs); record it again")
    try:
        return path.read_text(encoding="utf-8"), d
    except UnicodeDecodeError:
        raise InvalidInput(f"data {data_id}: {path} is not UTF-8 OpenQASM text") from None


def parse(entry: Any, lookup: Callable[[str], DataObject]) -> Circuit:
    """Check a circuit job's entry and resolve its circuit; InvalidInput says what is wrong."""
    if not isinstance(entry, dict):
        raise InvalidInput("a circuit job's entry is a table with qasm, qpy or data")
    unknown = set(entry) - KEYS
    if unknown:
        raise InvalidInput(f"a circuit job's entry has unknown key(s) {sorted(unknown)}; "
                           f"it takes {sorted(KEYS)}")
    given = [k for k in ("qasm", "qpy", "data") if k in entry]
    if len(given) != 1:
        raise InvalidInput("a circuit job names its circuit once: qasm (OpenQASM 2/3 text), "
                           f"qpy (base64) or data (a .qasm file's data id); it gave {given or 'none'}")
    primitive = entry.get("primitive", "sampler")
    if primitive not in PRIMITIVES:
        raise InvalidInput(f"a circuit job's primitive is one of {PRIMITIVES}, not {primitive!r}")
    req: dict[str, Any] = {
        "primitive": primitive,
        "shots": _int(entry, "shots", 1024, 1, MAX_SHOTS),
        "optimization_level": _int(entry, "optimization_level", 1, 0, 3),
        "seed": _int(entry, "seed", None, 0, 2**31 - 1),
    }
    if primitive == "estimator":
        req["observables"] = _observables(entry.get("observables"))
    elif "observables" in entry:
        raise InvalidInput("observables are for the estimator; a sampler job measures counts")
    source: DataObject | None = None
    text: str | None = None
    if "qpy" in entry:
        try:
            raw = base64.b64decode(entry["qpy"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise InvalidInput("a circuit job's qpy must be QPY bytes in base64") from None
        req["qpy"] = entry["qpy"]
        digest = hashlib.sha256(raw).hexdigest()
    else:
        if "data" in entry:
            text, source = _read_source(entry["data"], lookup)
        else:
            text = entry["qasm"]
            if not isinstance(text, str) or not text.strip():
                raise InvalidInput("a circuit job's qasm must be OpenQASM 2 or 3 text")
        if not text.lstrip().startswith(("OPENQASM 2", "OPENQASM 3")):
            raise InvalidInput("the circuit is not OpenQASM 2 or 3 text (it must start with "
                               "'OPENQASM 2.0;' or 'OPENQASM 3'); lwfm takes circuits as "
                               "OpenQASM or QPY, never as Python source")
        req["qasm"] = text
        digest = hashlib.sha256(text.encode()).hexdigest()
    return Circuit(request=req, circuit_sha256=digest, source=source, text=text)
