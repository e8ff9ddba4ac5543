"""A flaky job, retried: it fails twice, then passes on its third attempt.

``JobDefn(retries=Retries(count=3, backoff_s=0.2))`` makes lwfm run the job again
when it ends FAILED, waiting 0.2 s first. Each attempt is its own job in the thread
(its name says which attempt; it is linked to the attempt before it), and the job's
future and every trigger on it see only the final outcome: ``report`` below runs
once, after the attempt that passed. The retries are persisted triggers: a restart
or a kill -9 in between does not lose them.

Usage: python examples/retry_flaky.py    (uses $LWFM_HOME, default ~/.lwfm)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from lwfm import JobDefn, Manager, Retries, State


def main() -> int:
    counter = Path(tempfile.mkdtemp(prefix="lwfm-flaky-")) / "tries"
    # Each run counts itself in a file; the first two exit 1 (a "flaky node").
    flaky = JobDefn(entry=(f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); "
                           f"echo $n > {counter}; echo try $n; [ $n -ge 3 ]"),
                    kind="shell", name="flaky", retries=Retries(count=3, backoff_s=0.2))
    with Manager() as m:
        job = m.submit(flaky)
        report = job.then(JobDefn(entry=["echo", "flaky passed"], name="report"))
        final = job.result(timeout=60)
        attempts = [m.status(a) for a in job.attempts]
        for a in attempts:
            print(f"{a.defn.name:<22} {a.state.value:<8} exit={a.exit_code} "
                  f"log: {m.log(a.id).strip()}")
        done = report.result(timeout=60)
        print(f"report: {done.state.value}, log: {m.log(done.id).strip()}")
        reports = [j for j in m.store.find_jobs() if j.defn.name == "report"]

    ok = (final.state is State.COMPLETE and len(attempts) == 3
          and [a.state for a in attempts] == [State.FAILED, State.FAILED, State.COMPLETE]
          and len(reports) == 1 and done.started >= final.ended)
    print("OK: two failures, then a pass; the report ran once" if ok else
          "FAILED: the retries did not go as expected")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
