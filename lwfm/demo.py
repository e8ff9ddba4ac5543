"""``lwfm demo``: the whole story in one run, on the embedded default stores.

Here: a workflow with a trigger chain, a fan-out and join, a data trigger and a failure.
Then a "remote lab": a second lwfm home stands for an allocation far away; a job
launched from here runs a workflow there, which records its own thread. We export that
thread as a bundle, import it here, and one SPARQL query follows the lineage from a
remote output back to the job that launched it from this machine.

The functions ``make_input`` and ``remote_lab`` run inside demo jobs.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Callable

from .model import JobDefn, State

Echo = Callable[[str], None]


def make_input(path: str, words: str) -> None:
    """A demo job: write a file and record it as this job's output."""
    from .manager import Manager
    Path(path).write_text(words + "\n")
    with Manager() as m:
        m.notate(path, metadata={"kind": "input", "demo": True})


def remote_lab(remote_home: str, out_dir: str) -> None:
    """A demo job that runs a small workflow in ANOTHER lwfm home (the remote lab).

    It opens that home's Manager; the job id in its environment is adopted there, so
    everything the lab records hangs off the job that launched it from here.
    """
    from .manager import Manager
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with Manager(remote_home) as lab:
        sim = lab.submit(JobDefn(entry=f"seq 1 1000 > {out / 'simulation.dat'}", kind="shell",
                                 name="simulate"))
        lab.wait(sim.id)
        raw = lab.notate(out / "simulation.dat", job_id=sim.id, metadata={"stage": "raw"})
        ana = lab.submit(JobDefn(entry=f"sort -rn {out / 'simulation.dat'} | head -3 > "
                                       f"{out / 'top3.txt'}", kind="shell", name="analyse"))
        lab.wait(ana.id)
        lab.notate(raw.url, direction="get", job_id=ana.id, metadata={"stage": "raw"},
                   derived_from=raw.id)
        lab.notate(out / "top3.txt", job_id=ana.id, metadata={"stage": "result"})


LINEAGE_QUERY = """\
PREFIX prov: <http://www.w3.org/ns/prov#>
PREFIX schema: <http://schema.org/>
SELECT DISTINCT ?step ?name WHERE {
  ?result schema:contentUrl ?url .
  FILTER(STRENDS(STR(?url), "top3.txt"))
  ?result prov:wasInfluencedBy+ ?step .
  ?step schema:name ?name .
}"""


def run_demo(m, echo: Echo = print) -> dict[str, object]:  # noqa: ANN001
    """Run the demo against Manager ``m``; returns a summary (also printed)."""
    from .bundles import export_bundle, import_bundle
    py = sys.executable
    work = Path(tempfile.mkdtemp(prefix="lwfm-demo-"))
    wf = m.create_workflow("demo", "lwfm demo: triggers, data, and a remote lab round trip")
    echo(f"lwfm home {m.home}, instance {m.instance_id}")
    echo(f"workflow {wf.id} 'demo'; files under {work}")

    # A -> B -> C by triggers, and a data trigger on A's output.
    a = m.submit(JobDefn(entry="lwfm.demo:make_input", kind="python", name="A: make input",
                         args=[str(work / "input.txt"), "the quick brown fox"]), workflow_id=wf.id)
    b = m.on(a.id, JobDefn(entry=f"wc -w {work / 'input.txt'}", kind="shell", name="B: count"))
    c = m.on(b.job_id, JobDefn(entry=["echo", "C: chain done"], name="C: report"))
    d = m.on_data({"kind": "input", "demo": True},
                  JobDefn(entry=["echo", "input seen"], name="D: on data"), workflow_id=wf.id)
    # Fan out three jobs, join when all complete; one failing job makes a trigger dead.
    fan = [m.submit(JobDefn(entry=[py, "-c", f"print({i} * {i})"], name=f"fan {i}"),
                    workflow_id=wf.id) for i in range(3)]
    join = m.on_all([j.id for j in fan], JobDefn(entry=["echo", "joined"], name="join"))
    bad = m.submit(JobDefn(entry="exit 3", kind="shell", name="fails"), workflow_id=wf.id)
    never = m.on(bad.id, JobDefn(entry=["echo", "never"], name="never runs"))
    for job_id in (a.id, b.job_id, c.job_id, d.job_id, join.job_id, bad.id):
        j = m.wait(job_id, timeout=120)
        echo(f"  {j.defn.name:<14} {j.state.value:<9} exit={j.exit_code}")
    echo(f"  trigger after 'fails': {m.store.get_trigger(never.trigger_id).status.value} "
         f"({m.store.get_trigger(never.trigger_id).reason})")

    # The remote lab: a second home, its own instance, launched from a job here.
    lab_home = work / "remote-lab-home"
    root = m.submit(JobDefn(entry="lwfm.demo:remote_lab", kind="python", name="launch remote lab",
                            args=[str(lab_home), str(work / "lab-output")]), workflow_id=wf.id)
    root = m.wait(root.id, timeout=300)
    echo(f"remote lab job {root.id[:8]}: {root.state.value}")
    if root.state is not State.COMPLETE:
        echo(m.log(root.id))
        raise RuntimeError("the remote lab job failed; see its log above")
    from .manager import Manager
    bundle = work / "remote-lab.zip"
    with Manager(lab_home) as lab:
        res = export_bundle(lab.store, lab.config, bundle, job_id=root.id)
    echo(f"exported the lab's thread: {bundle.name}, {res.counts}")
    rep = import_bundle(m.store, m.config, bundle)
    echo(f"imported here: added {rep.added}")
    rep2 = import_bundle(m.store, m.config, bundle)
    echo(f"imported again: added {sum(rep2.added.values())} (idempotent)")

    echo("lineage of the lab's top3.txt, one SPARQL query across both instances:")
    echo("\n".join("    " + line for line in LINEAGE_QUERY.splitlines()))
    rows = m.graph.query(LINEAGE_QUERY)
    names = sorted({str(r[1]) for r in rows})
    for n in names:
        echo(f"  <- {n}")
    joined = "launch remote lab" in names
    echo("the remote thread joins the local one at 'launch remote lab'" if joined
         else "WARNING: the lineage did not reach the local launch job")
    return {"workflow": wf.id, "remote_root": root.id, "lineage": names, "joined": joined}
