"""The comparison job of the quantum benchmark (a python job: ``compare:main``).

Runs inside lwfm (``LWFM_JOB_ID`` is set), so ``Manager()`` links what it records to
this job: it records each run's result as used, then puts a Markdown table and a PNG
plot of the Hellinger fidelity of each result to the ideal GHZ distribution.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lwfm import Manager
from lwfm.files import local_path

IDEAL = {"000": 0.5, "111": 0.5}


def fidelity(counts: dict[str, int]) -> float:
    from qiskit.quantum_info import hellinger_fidelity
    return float(hellinger_fidelity(counts, IDEAL))


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.5))
    labels = [f"{r['backend']}\nqiskit {r['qiskit']}" for r in rows]
    ax.bar(labels, [r["fidelity"] for r in rows], color=["#4c72b0", "#55a868", "#c44e52"])
    ax.set_ylim(0, 1)
    ax.set_ylabel("Hellinger fidelity to ideal GHZ")
    ax.set_title("GHZ-3 on fake IBM backends")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(out_dir: str, *run_ids: str) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with Manager() as m:
        for run_id in run_ids:
            (res,) = m.find({"kind": "quantum_result"}, job_id=run_id)
            m.notate(res.url, direction="get", derived_from=res.id,
                     metadata={"kind": "quantum_result_used"})
            doc = json.loads(local_path(res.url).read_text())
            rows.append({"site": m.status(run_id).context.site, "backend": doc["backend"],
                         "qiskit": doc["qiskit"], "sandbox": doc["sandbox"],
                         "depth": doc["depth"], "shots": doc["shots"],
                         "fidelity": round(fidelity(doc["counts"]), 6), "result": res.id})
        table = out / "fidelity.md"
        table.write_text("| site | backend | qiskit | depth | shots | Hellinger fidelity |\n"
                         "|---|---|---|---|---|---|\n" + "".join(
                             f"| {r['site']} | {r['backend']} | {r['qiskit']} | {r['depth']} | "
                             f"{r['shots']} | {r['fidelity']:.4f} |\n" for r in rows))
        png = out / "fidelity.png"
        plot(rows, png)
        for path, fmt in ((table, "markdown"), (png, "png")):
            m.notate(path, metadata={"kind": "comparison", "format": fmt, "ideal": "ghz3"})
    return {"rows": rows}


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:])))
