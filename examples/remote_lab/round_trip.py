"""The remote-lab round trip, as a user runs it from home.

1. launch ``lab_flow.py`` as a job on the ssh site ``lab`` (it runs a small workflow
   under the lab's own lwfm, recording children and data there);
2. ``lwfm pull lab --workflow ID`` brings that thread home (same as :func:`pull`);
3. one SPARQL query walks from the home job to the lab's output data.

Needs a ``[sites.lab]`` table in $LWFM_HOME/lwfm.toml (see README.md). Prints one JSON
object on its last line.
Usage: python round_trip.py [--site lab]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lwfm import Manager
from lwfm.model import JobDefn, State
from lwfm.pull import pull

HERE = Path(__file__).resolve().parent

QUERY = """
SELECT ?child ?name ?data ?url ?home_graph ?lab_graph WHERE {
  GRAPH ?home_graph { <urn:uuid:%(root)s> a lwfm:Job }
  GRAPH ?lab_graph  { ?child lwfm:parentJob <urn:uuid:%(root)s> }
  ?child schema:name ?name .
  ?data prov:wasGeneratedBy ?child ; schema:contentUrl ?url .
  FILTER (?home_graph != ?lab_graph)
}
"""


def main(site: str = "lab") -> dict:
    with Manager() as m:
        lab = m.site(site)
        wf = m.create_workflow("remote-lab round trip", "a home job launches a workflow at the lab")
        flow = m.put(HERE / "lab_flow.py", "flows/lab_flow.py", site=site,
                     metadata={"kind": "workflow-script"})
        remote_script = lab.repo.path_of("flows/lab_flow.py")
        py = str(lab.cfg.get("python_command", "python3"))
        root = m.submit(JobDefn(entry=[*py.split(), remote_script, f"{lab.workdir}/lab-output"],
                                site=site, name="lab campaign"), workflow_id=wf.id)
        done = m.wait(root.id, timeout=300)
        if done.state is not State.COMPLETE:
            raise SystemExit(f"the lab job ended {done.state.value}:\n{m.log(root.id)}")
        first = pull(m, site, workflow_id=wf.id)
        again = pull(m, site, workflow_id=wf.id)
        rows = m.graph.select(QUERY % {"root": root.id})
        lineage = [{"child": str(r[0].value), "name": str(r[1].value), "data": str(r[2].value),
                    "url": str(r[3].value), "home_graph": str(r[4].value),
                    "lab_graph": str(r[5].value)} for r in rows]
        out = {"workflow": wf.id, "root_job": root.id, "lab_log": m.log(root.id).strip(),
               "first_pull_added": first.report.added, "second_pull_changed": again.report.changed,
               "lineage": lineage}
        return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--site", default="lab")
    result = main(ap.parse_args().site)
    for row in result["lineage"]:
        print(f"home job {result['root_job'][:8]} -> lab job {row['child'][9:17]} ({row['name']}) "
              f"-> {row['url']}")
    print(json.dumps(result, sort_keys=True))
    sys.exit(0 if result["lineage"] else 1)
