"""Archive a job's output to a Globus collection, get it back later, and show the thread.

A local job writes result.csv; lwfm puts it on the `archive` site (a Globus transfer job,
checksum-verified), removes the local copy (disk space is short), then gets it back as
restored.csv and checks it is the same bytes. The thread links the three copies: the job
generated result.csv, the archive copy is derived from it, restored.csv from the archive.

    lwfm login archive            # once: Globus native-app login (see README.md)
    python examples/globus_archive/archive.py [SITE]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from lwfm import JobDefn, Manager, State

THREAD = """
SELECT ?copy ?site ?job ?original WHERE {
  ?c prov:wasDerivedFrom ?o ; schema:contentUrl ?copy ; lwfm:site/schema:name ?site ;
     schema:isPartOf ?wf ; prov:wasGeneratedBy/schema:name ?job .
  ?o schema:contentUrl ?original .
  FILTER(?wf = <%s>)
} ORDER BY ?job ?copy"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    site = args[0] if args else "archive"
    work = Path(tempfile.mkdtemp(prefix="lwfm-globus-archive-"))
    with Manager() as m:
        if not m.site(site).auth.is_current():
            print(f"not logged in to Globus: run `lwfm login {site}` first", file=sys.stderr)
            return 2
        wf = m.create_workflow("globus-archive")
        code = "open('result.csv', 'w').write(''.join(f'{i},{i * i}\\n' for i in range(1000)))"
        job = m.submit(JobDefn(entry=[sys.executable, "-c", code], cwd=str(work),
                               name="simulate"), workflow_id=wf.id)
        if m.wait(job.id, timeout=120).state is not State.COMPLETE:
            print(f"the job did not complete: {m.log(job.id)}", file=sys.stderr)
            return 1
        result = work / "result.csv"
        made = m.notate(result, metadata={"kind": "result"}, job_id=job.id)
        print(f"job {job.id} wrote {result} (sha256 {(made.sha256 or '')[:12]}...)")

        archived = m.put(result, f"{wf.id}/result.csv", site=site, job_id=job.id,
                         metadata={"kind": "result", "archived": True})
        print(f"archived to {archived.url} by transfer job {archived.job_id} "
              f"(Globus verified {archived.metadata['globus_checksum_algorithm']})")
        result.unlink()   # later: the local copy is gone, the archive keeps it

        restored = m.get(archived.url, work / "restored.csv", site=site, job_id=job.id)
        print(f"restored {restored.url} by transfer job {restored.job_id}")
        if restored.sha256 != made.sha256:
            print("the restored copy differs from the original", file=sys.stderr)
            return 1

        print("the thread (each copy, the job that made it, and what it derives from):")
        for copy, where, by, original in m.graph.query(THREAD % f"urn:uuid:{wf.id}"):
            print(f"  {copy} [{where}] made by '{by}' from {original}")
    print(f"OK restored sha256 {restored.sha256}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
