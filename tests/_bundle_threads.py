"""Threads for the bundle tests, recorded through the Store API of two real homes.

``remote`` stands for an lwfm instance at a remote lab, ``local`` for the user's
own. The local ``launcher`` job starts a job on the remote site; the remote
instance records that job under the SAME id (as the ssh site arranges) and runs
a small workflow below it, with data flowing from one step to the next.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select, text

from lwfm.config import Config, load
from lwfm.model import (
    DataObject,
    Job,
    JobContext,
    JobDefn,
    JobStatus,
    State,
    Trigger,
    Workflow,
    utcnow,
)
from lwfm.store import Store, t


@dataclass
class Home:
    config: Config
    store: Store

    @classmethod
    def open(cls, path: Path) -> Home:
        cfg = load(path)
        return cls(cfg, Store(cfg.store_url))


@dataclass
class Thread:
    launcher: str                 # local root job
    remote_root: str              # same id in both stores
    steps: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    workflow: str = ""
    local_workflow: str = ""


def _job(store: Store, defn: JobDefn, ctx: JobContext, *states: tuple[State, int | None],
         t0=None) -> Job:
    t0 = t0 or utcnow()
    job = Job(defn, ctx, created=t0)
    store.add_job(job, JobStatus(ctx.job_id, State.READY, time=t0))
    for i, (st, code) in enumerate(states, 1):
        store.record_status(JobStatus(ctx.job_id, st, native_state=st.value.lower(),
                                      time=t0 + timedelta(seconds=i), exit_code=code,
                                      info="boom" if st is State.FAILED else None))
    return job


def build(local: Home, remote: Home, tmp: Path) -> Thread:
    lwf = local.store.add_workflow(Workflow(name="campaign", description="local side"))
    launcher = _job(local.store, JobDefn(entry=["python", "campaign.py"]),
                    JobContext(workflow_id=lwf.id), (State.RUNNING, None))
    # The local record of the job launched on the remote site (not finished as far as we know).
    rctx = JobContext(parent_id=launcher.id, originator_id=launcher.id, workflow_id=lwf.id,
                      site="lab", native_id="4242")
    _job(local.store, JobDefn(entry="lwfm run-remote sim.sh", kind="shell", site="lab"), rctx,
         (State.PENDING, None), (State.RUNNING, None))
    # The remote instance adopts that job (same id) and runs a workflow below it.
    rwf = remote.store.add_workflow(Workflow(name="simulation", description="remote lab run",
                                             props={"allocation": "A-17"}))
    adopted = JobContext(job_id=rctx.job_id, parent_id=launcher.id, originator_id=launcher.id,
                         workflow_id=rwf.id, site="local")
    _job(remote.store, JobDefn(entry=["bash", "sim.sh"]), adopted, (State.RUNNING, None),
         (State.COMPLETE, 0))
    th = Thread(launcher=launcher.id, remote_root=rctx.job_id, workflow=rwf.id,
                local_workflow=lwf.id)
    prev_out: DataObject | None = None
    for i in range(3):
        ctx = JobContext(parent_id=rctx.job_id, originator_id=launcher.id, workflow_id=rwf.id)
        final = (State.FAILED, 3) if i == 2 else (State.COMPLETE, 0)
        _job(remote.store, JobDefn(entry=["sim", f"--step={i}"], env={"OMP_NUM_THREADS": "4"}),
             ctx, (State.RUNNING, None), (State.INFO, None), final)
        th.steps.append(ctx.job_id)
        if prev_out is not None:
            remote.store.add_data(DataObject(url=prev_out.url, direction="get", job_id=ctx.job_id,
                                             workflow_id=rwf.id, sha256=prev_out.sha256,
                                             size=prev_out.size, metadata={"step": i, "role": "input"},
                                             derived_from=prev_out.id))
        f = tmp / f"remote-out-{i}.dat"
        f.write_text(f"result of step {i}\n")
        import hashlib
        out = remote.store.add_data(DataObject(
            url=str(f), job_id=ctx.job_id, workflow_id=rwf.id, size=f.stat().st_size,
            sha256=hashlib.sha256(f.read_bytes()).hexdigest(), media_type="text/plain",
            metadata={"step": i, "role": "output", "tags": ["sim", "v1"]}))
        th.outputs.append(out.id)
        prev_out = out
    remote.store.add_trigger(Trigger(kind="job", defn=JobDefn(entry=["post", "process"]),
                                     watch=[th.steps[-1]], workflow_id=rwf.id))
    return th


TABLES = ("workflows", "jobs", "statuses", "data", "data_meta", "triggers", "trigger_watch",
          "bundles", "bundle_items", "events", "crate_nodes")


def snapshot(store: Store) -> dict[str, list[tuple]]:
    """Every row of every table, for 'the store is exactly as it was' checks."""
    out = {}
    with store.read() as c:
        for name in TABLES:
            out[name] = sorted(tuple(map(str, r)) for r in c.execute(text(f"SELECT * FROM {name}")))
    return out


def count(store: Store, table) -> int:
    with store.read() as c:
        return c.execute(select(func.count()).select_from(table)).scalar_one()


__all__ = ["TABLES", "Home", "Thread", "build", "count", "snapshot", "t"]
