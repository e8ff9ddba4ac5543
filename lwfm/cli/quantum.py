"""Quantum commands: ``lwfm circuit`` runs an OpenQASM file on an ibm_quantum site,
``lwfm backends`` lists a site's backends. Thin: each is one Manager call."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import InvalidInput, LwfmError, NotSupported
from ..model import EntryKind, JobDefn
from ._common import command_list, echo_json, json_option, print_table, with_manager

COMMANDS, command = command_list()


@command("circuit")
@click.argument("site")
@click.argument("qasm_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--shots", type=int, default=1024, show_default=True)
@click.option("--estimator", "observables", multiple=True, metavar="PAULI",
              help="Run the estimator for this observable (repeat for more); default: sampler.")
@click.option("--optimization-level", type=click.IntRange(0, 3), default=1, show_default=True)
@click.option("--seed", type=int, help="Transpiler seed.")
@click.option("--name", default="", help="A name for the job.")
@click.option("--workflow", "workflow_id", help="Workflow id the job belongs to.")
@click.option("--wait", "do_wait", is_flag=True, help="Wait for the job to end; exit 1 unless COMPLETE.")
@json_option
@with_manager
def circuit_cmd(m, site: str, qasm_file: Path, shots: int, observables: tuple[str, ...],
                optimization_level: int, seed: int | None, name: str, workflow_id: str | None,
                do_wait: bool, as_json: bool) -> None:
    """Run the OpenQASM 2/3 circuit in QASM_FILE on SITE (an ibm_quantum site).

    On a fake backend (local mode) the job runs in this process, so this waits for it
    with or without --wait."""
    try:
        text = qasm_file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{qasm_file} is not UTF-8 OpenQASM text") from None
    entry: dict = {"qasm": text, "shots": shots, "optimization_level": optimization_level,
                   "name": name or qasm_file.name}
    if seed is not None:
        entry["seed"] = seed
    if observables:
        entry.update(primitive="estimator", observables=list(observables))
    job = m.submit(JobDefn(kind=EntryKind.CIRCUIT, entry=entry, site=site, name=name),
                   workflow_id=workflow_id)
    if do_wait or not m.site(site).run.detach:
        job = m.wait(job.id)
    results = [d.to_dict() for d in m.find({"kind": "quantum_result"}, job_id=job.id)]
    if as_json:
        echo_json({"job_id": job.id, "state": job.state.value if job.state else None,
                   "native_id": job.context.native_id, "results": results})
    else:
        click.echo(f"{job.id} {job.state.value if job.state else ''} runtime job "
                   f"{job.context.native_id}" + "".join(f"\nresult {r['id']} {r['url']}"
                                                         for r in results))
    if job.state is not None and job.state.terminal and job.state.value != "COMPLETE":
        raise LwfmError(f"job {job.id} ended {job.state.value}: {m.history(job.id)[-1].info}")


@command("backends")
@click.argument("site")
@json_option
@with_manager
def backends_cmd(m, site: str, as_json: bool) -> None:
    """List the backends of SITE (an ibm_quantum site; the fakes in local mode)."""
    spin = m.site(site).spin
    if not hasattr(spin, "backends"):
        raise NotSupported(f"site {site!r} lists no quantum backends (it is not ibm_quantum)")
    rows = spin.backends()
    if as_json:
        echo_json(rows)
        return
    print_table(("name", "qubits", "status"), ((r["name"], r["qubits"], r["status"]) for r in rows))
