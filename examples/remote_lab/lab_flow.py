"""The workflow that runs AT the lab, under the lab's own lwfm.

The home instance starts this script as a job on its ssh site. The ssh driver sets
LWFM_HOME to the lab's lwfm home and LWFM_JOB_ID to the id of the job recorded at
home, so ``Manager()`` here adopts that same id: every child job and every data
object recorded below hangs off the home job once ``lwfm pull`` brings it back.
Usage: python lab_flow.py [OUTPUT_DIR]

``LWFM_LAB_SITE`` (in the job's env) names the lab's site for the two steps, e.g. its
``psij`` site so that they run under the lab's Slurm; default ``local``.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from lwfm import Manager
from lwfm.model import JobDefn, State


def main(out_dir: Path) -> int:
    site = os.environ.get("LWFM_LAB_SITE", "local")
    with Manager() as m:
        if m.context is None:
            raise SystemExit("run me as an lwfm job (LWFM_JOB_ID is not set)")
        out_dir.mkdir(parents=True, exist_ok=True)
        out = out_dir / f"result-{m.context.job_id[:8]}.txt"
        sim = m.submit(JobDefn(entry=["/bin/sh", "-c", f"echo simulated at the lab > {shlex.quote(str(out))}"],
                               name="simulate", site=site))
        if m.wait(sim.id, timeout=120).state is not State.COMPLETE:
            return 1
        m.notate(out, job_id=sim.id, metadata={"kind": "lab-result", "step": "simulate"})
        ana = m.submit(JobDefn(entry=["wc", "-c", str(out)], name="analyse", site=site))
        m.notate(out, direction="get", job_id=ana.id, metadata={"kind": "lab-result"})
        ok = m.wait(ana.id, timeout=120).state is State.COMPLETE
        print(f"lab workflow done: simulate={sim.id} analyse={ana.id} output={out}")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd() / "lab-output"))
