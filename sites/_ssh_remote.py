"""Runs AT the lab, from the ssh job wrapper after the job ends.

A job launched from home over SSH is adopted by the lab's lwfm as soon as it makes an
lwfm call there (same job id). Nothing at the lab would ever record its end, so the
lab's thread would show it RUNNING forever; the wrapper calls :func:`finish` to record
the same end the home instance will see (state and exit code), so a pulled bundle
agrees with home. Jobs the lab never adopted are left alone, and no store is created.
Called as ``python -m lwfm._pycall lwfm.sites._ssh_remote:finish JOB_ID STATE [CODE]``.
"""

from __future__ import annotations

from pathlib import Path


def finish(job_id: str, state: str, exit_code: str = "") -> None:
    from lwfm import config
    from lwfm.errors import NotFound
    from lwfm.model import JobStatus, State
    from lwfm.store import Store

    cfg = config.load()   # LWFM_HOME = the lab's home, set by the wrapper's environment
    url = cfg.store_url
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists():
        return                                   # the job never used lwfm at the lab
    store = Store(url)
    try:
        store.get_job(job_id)
        code = int(exit_code) if exit_code.lstrip("-").isdigit() else None
        store.record_status(JobStatus(job_id, State(state), native_state=f"exit {code}",
                                      exit_code=code,
                                      info="recorded at the lab by the ssh job wrapper"))
    except NotFound:
        return
    finally:
        store.close()
