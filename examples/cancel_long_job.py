"""Cancel a long job from another process.

This script starts ``sleep 600`` and waits for it. A separate process (here the
``lwfm cancel <id>`` command, with the same LWFM_HOME) cancels it: lwfm signals the
job's whole process group, so the job and anything it started are gone, and the
waiting script sees the job end CANCELLED.

Usage: python examples/cancel_long_job.py    (uses $LWFM_HOME, default ~/.lwfm)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

from lwfm import JobDefn, Manager, State


def group_alive(pgid: int) -> bool:
    """Whether any process is left in the process group (signal 0 only checks)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def main() -> int:
    lwfm_cli = [shutil.which("lwfm") or sys.executable]
    if lwfm_cli[0] == sys.executable:
        lwfm_cli += ["-m", "lwfm.cli"]
    with Manager() as m:
        job = m.submit(JobDefn(entry="sleep 600 & sleep 600; wait", kind="shell", name="long job"))
        pgid = int(job.context.native_id.split(":")[0])  # the job leads its own process group
        print(f"job {job.id} is {job.state.value}; process group {pgid} alive: {group_alive(pgid)}")

        t0 = time.monotonic()
        done = subprocess.run([*lwfm_cli, "cancel", job.id], capture_output=True, text=True,
                              env={**os.environ, "LWFM_HOME": str(m.home)}, timeout=60, check=False)
        print(f"`lwfm cancel` (pid of another process) said: {done.stdout.strip()} "
              f"(exit {done.returncode})")
        job = m.wait(job.id, timeout=60)
        print(f"job ended {job.state.value} {time.monotonic() - t0:.2f}s after the cancel started")
        gone = not group_alive(pgid)
        print(f"process group {pgid} gone: {gone}")
        print("history: " + " -> ".join(s.state.value for s in m.history(job.id)))

    ok = done.returncode == 0 and job.state is State.CANCELLED and gone
    print("OK" if ok else "FAILED: the job was not cancelled cleanly")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
