"""A job in a venv site uses a different version of a library than the host has.

The ``old-six`` site (see ``lwfm.toml`` here) is a virtualenv with six 1.15.0, built
once on first use and reused after. The job imports six there, whatever version the
host has (or even if it has none). Prints one JSON object on its last line.
Usage: python run.py   (uses $LWFM_HOME, or a fresh temporary home)
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from lwfm import Manager
from lwfm.model import JobDefn, State

HERE = Path(__file__).resolve().parent
SITE = "old-six"


def host_six() -> str | None:
    try:
        return version("six")
    except PackageNotFoundError:
        return None


def main() -> dict:
    home = Path(os.environ.get("LWFM_HOME") or tempfile.mkdtemp(prefix="lwfm-venv-example-"))
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "lwfm.toml").exists():
        shutil.copyfile(HERE / "lwfm.toml", home / "lwfm.toml")
    with Manager(home) as m:
        # cwd: the job imports sixjob.py from this directory
        job = m.submit(JobDefn(entry="sixjob:report", kind="python", site=SITE, cwd=str(HERE),
                               name="six in a venv"))
        job = m.wait(job.id, timeout=600)
        if job.state is not State.COMPLETE:
            raise SystemExit(f"job {job.id} ended {job.state}: {m.log(job.id)}")
        seen = json.loads(m.log(job.id).strip().splitlines()[-1])
        venv = m.site(SITE).ping("six")
    result = {"job_id": job.id, "state": job.state.value, "job_six": seen["six"],
              "job_prefix": seen["prefix"], "driver_six": venv["distributions"]["six"],
              "host_six": host_six(), "host_prefix": sys.prefix}
    return result


if __name__ == "__main__":
    out = main()
    print(f"host six {out['host_six']}  |  job in venv site {SITE!r}: six {out['job_six']}")
    print(json.dumps(out))
