"""The job a process runs inside, found in its environment.

A job started by lwfm carries ``LWFM_JOB_ID`` (and its workflow, parent, site) in its
environment, so ``Manager()`` inside it links what it submits and records to it. A job
launched by *another* lwfm instance (same id, e.g. over SSH with this home) is adopted:
recorded here under that id, so its children join the launcher's thread after import.
"""

from __future__ import annotations

import getpass
import os
import time

from .errors import NotFound
from .model import Job, JobContext, JobDefn, JobStatus, State, Workflow
from .store import Store

_OWN_RECORD_WAIT_S = 10.0  # a submitter's group commit may be a moment behind its child

try:  # the person behind the jobs this process submits (an agent in the graph)
    USER: str | None = getpass.getuser()
except (KeyError, OSError):
    USER = None


def env_job_id() -> str | None:
    """The id of the lwfm job this process runs in, from its environment (None outside)."""
    return os.environ.get("LWFM_JOB_ID") or None


def adopt_context(store: Store) -> JobContext | None:
    """The context of the job this process runs in, or None outside lwfm jobs."""
    job_id = env_job_id()
    if not job_id:
        return None
    wf_id = os.environ.get("LWFM_WORKFLOW_ID") or None
    ours = os.environ.get("LWFM_INSTANCE_ID") == store.instance_id
    deadline = time.monotonic() + (_OWN_RECORD_WAIT_S if ours else 0.0)
    while True:
        try:
            return store.get_job(job_id).context
        except NotFound:
            if time.monotonic() >= deadline:
                break
            time.sleep(0.01)
    if wf_id:
        try:
            store.get_workflow(wf_id)
        except NotFound:
            store.add_workflow(Workflow(name=os.environ.get("LWFM_WORKFLOW_NAME", ""), id=wf_id))
    ctx = JobContext(job_id=job_id, parent_id=os.environ.get("LWFM_PARENT_ID") or None,
                     originator_id=os.environ.get("LWFM_ORIGINATOR_ID") or job_id,
                     workflow_id=wf_id, site=os.environ.get("LWFM_SITE", "remote"))
    defn = JobDefn(entry=["(launched by another lwfm instance)"], site=ctx.site,
                   name=os.environ.get("LWFM_JOB_NAME", "adopted job"))
    try:
        store.add_job(Job(defn=defn, context=ctx, state=State.RUNNING, submitter=USER),
                      JobStatus(job_id, State.RUNNING, info="adopted from environment"))
    except Exception:  # another process adopted it first
        return store.get_job(job_id).context
    return ctx
