"""Data futures: a job that waits for the data two other jobs will put, not for their states.

"mesh" and "params" each declare the data they will put (``JobDefn.outputs``) and record
it from inside the job (``Manager().notate``). "solve" takes both data futures as its
inputs: it starts once both files are put, reads what it was fed in ``LWFM_INPUTS``, and
the digital thread says it ``prov:used`` each. Nothing waits in memory: the data trigger
is persisted, so another process (``lwfm serve``) would fire it just the same.

Usage: python examples/data_futures.py    (uses $LWFM_HOME, default ~/.lwfm)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from lwfm import JobDefn, Manager, State

PRODUCE = """
import sys
from pathlib import Path
from lwfm import Manager
out, kind = Path(sys.argv[1]), sys.argv[2]
out.write_text(kind + " data\\n")
with Manager() as m:
    m.notate(out, metadata={"kind": kind})
"""

SOLVE = """
import json, os
inputs = json.loads(os.environ["LWFM_INPUTS"])
print(" + ".join(open(d["url"].removeprefix("file://")).read().strip() for d in inputs))
"""


def produce(work: Path, kind: str) -> JobDefn:
    return JobDefn(entry=[sys.executable, "-c", PRODUCE, str(work / f"{kind}.dat"), kind],
                   name=kind, outputs=[{"kind": kind}])


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="lwfm-data-futures-"))
    with Manager() as m:
        mesh, params = m.submit(produce(work, "mesh")), m.submit(produce(work, "params"))
        solve = m.submit(JobDefn(entry=[sys.executable, "-c", SOLVE], name="solve"),
                         inputs=[mesh.outputs[0], params.outputs[0]])
        print(f"solve {solve.id} waits for the data of mesh {mesh.id} and params {params.id}")
        job = solve.result(timeout=120)
        fed = m.inputs_of(job.id)
        said = m.log(job.id).strip()
        used = sorted(str(r[0]) for r in m.graph.query(
            "PREFIX prov: <http://www.w3.org/ns/prov#> SELECT ?d WHERE { "
            f"<urn:uuid:{job.id}> prov:used ?d }}"))
        puts = [mesh.outputs[0].result(timeout=5), params.outputs[0].result(timeout=5)]
        print(f"solve: {job.state.value}, fed {[Path(d['url']).name for d in fed]}, said {said!r}")
        print(f"the thread says solve used {used}")
    ok = (job.state is State.COMPLETE and [d["id"] for d in fed] == [p.id for p in puts]
          and said == "mesh data + params data"
          and used == sorted(f"urn:uuid:{p.id}" for p in puts))
    print("OK" if ok else "FAILED: solve was not fed the two data futures as expected")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
