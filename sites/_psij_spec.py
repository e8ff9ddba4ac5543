"""A JobDefn as a psij JobSpec: the command, its files, resources and attributes.

``JobDefn.resources`` keys are lwfm's names for what psij's ``ResourceSpecV1`` and
``JobAttributes`` can ask a scheduler for. Every key is checked before the job is recorded
(:func:`check_resources`): a typo or a wrong type is a clear error, never a request
silently dropped.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, Mapping

from psij import JobAttributes, JobSpec, ResourceSpecV1

from lwfm.errors import InvalidInput
from lwfm.site import WALLTIME

#: resource key -> (type, what it asks for), as the error messages and README tell it.
RESOURCE_KEYS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "nodes": (int, "node count"),
    "processes": (int, "process count (run under srun)"),
    "processes_per_node": (int, "processes per node"),
    "cpu_cores_per_process": (int, "CPU cores per process"),
    "gpu_cores_per_process": (int, "GPU cores per process"),
    "memory_mb": (int, "memory per node, MiB"),
    "exclusive": (bool, "whole nodes, not shared"),
    WALLTIME: ((int, float), "wall-time limit, seconds (Slurm rounds up to minutes)"),
    "queue": (str, "queue or partition"),
    "account": (str, "account or project to charge"),
    "reservation": (str, "reservation id"),
    "custom_attributes": (dict, 'executor-specific attributes, e.g. {"slurm.constraint": "gpu"}'),
}
_COUNTS = ("nodes", "processes", "processes_per_node", "cpu_cores_per_process",
           "gpu_cores_per_process", "memory_mb", WALLTIME)


def check_resources(resources: Mapping[str, Any], site: str) -> None:
    """Refuse resource values psij could not take, naming the key and what it wants."""
    for key, value in resources.items():
        if key not in RESOURCE_KEYS:
            raise InvalidInput(f"site {site!r} cannot honour resource {key!r} (it honours: "
                               f"{', '.join(sorted(RESOURCE_KEYS))})")
        kind, what = RESOURCE_KEYS[key]
        bad = isinstance(value, bool) != (kind is bool) or not isinstance(value, kind)
        if not bad and key in _COUNTS and value <= 0:
            bad = True
        if not bad and kind is str and not value.strip():
            bad = True
        if not bad and kind is dict:
            bad = not all(isinstance(k, str) and "." in k and isinstance(v, (str, int))
                          and not isinstance(v, bool) for k, v in value.items())
        if bad:
            want = ("a number of seconds > 0" if key == WALLTIME else
                    "a positive whole number" if key in _COUNTS else
                    "true or false" if kind is bool else
                    'a table of "executor.name" = value' if kind is dict else "a non-empty string")
            raise InvalidInput(f"resource {key!r} ({what}) must be {want}, not {value!r}")


def merged(defaults: Mapping[str, Any], resources: Mapping[str, Any]) -> dict[str, Any]:
    """The site's default resources under the job's own (custom attributes merged too)."""
    out = {**defaults, **resources}
    if "custom_attributes" in defaults and "custom_attributes" in resources:
        out["custom_attributes"] = {**defaults["custom_attributes"], **resources["custom_attributes"]}
    return out


def job_spec(argv: list[str], *, name: str, cwd: str | None, env: dict[str, str],
             stdout: Path, stderr: Path, resources: Mapping[str, Any],
             queue: str | None, launcher: str | None) -> JobSpec:
    """The psij JobSpec that runs ``argv``; ``queue``: the compute type or the site's queue."""
    r = resources
    spec = ResourceSpecV1(
        node_count=r.get("nodes"), process_count=r.get("processes"),
        processes_per_node=r.get("processes_per_node"),
        cpu_cores_per_process=r.get("cpu_cores_per_process"),
        gpu_cores_per_process=r.get("gpu_cores_per_process"),
        exclusive_node_use=bool(r.get("exclusive", False)),
        memory=r["memory_mb"] * 1024 * 1024 if "memory_mb" in r else None)
    attrs = JobAttributes(
        duration=timedelta(seconds=r.get(WALLTIME, 600)),
        queue_name=r.get("queue", queue), account=r.get("account"),
        reservation_id=r.get("reservation"),
        custom_attributes=dict(r.get("custom_attributes", {})) or None)
    if WALLTIME not in r:  # no --time: the partition's limit, not psij's 10 minutes
        attrs.duration = None  # type: ignore[assignment]
    return JobSpec(executable=argv[0], arguments=argv[1:], name=name,
                   directory=Path(cwd) if cwd else None, environment=dict[str, str | int](env),
                   inherit_environment=True, stdout_path=stdout, stderr_path=stderr,
                   resources=spec, attributes=attrs, launcher=launcher)
