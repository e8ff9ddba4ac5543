"""Hello, lwfm: run one job, wait for it, read its state and its output.

Usage: python examples/hello.py    (uses $LWFM_HOME, default ~/.lwfm)
"""

from __future__ import annotations

import sys

from lwfm import JobDefn, Manager, State


def main() -> int:
    with Manager() as m:
        job = m.submit(JobDefn(entry=["echo", "hello"], name="hello"))
        print(f"submitted job {job.id} to site 'local'")
        job = m.wait(job.id, timeout=60)
        output = m.log(job.id)
        print(f"state: {job.state.value} exit={job.exit_code}")
        print(f"log: {output.strip()}")
        print("history: " + " -> ".join(s.state.value for s in m.history(job.id)))
    ok = job.state is State.COMPLETE and output.strip() == "hello"
    print("OK" if ok else "FAILED: expected COMPLETE and 'hello' in the log")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
