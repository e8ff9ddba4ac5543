"""Core commands: run and track jobs, move and find data, list sites, serve, demo."""

from __future__ import annotations

import json
import math
import threading
from typing import Any

import click

from ..errors import LwfmError, NotFound
from ..model import EntryKind, Job, JobDefn, Retries, State
from ._common import (command_list, echo_json, get_manager, json_option, print_table,
                      resolve_workflow, with_manager)

COMMANDS, command = command_list()


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    v = float(text)
    if math.isinf(v):
        raise ValueError(f"{text} is beyond a float")
    return v


def parse_pairs(pairs: tuple[str, ...], what: str, typed: bool = True) -> dict[str, Any]:
    """``key=value`` pairs. ``typed``: a value that is valid JSON (number, true, [..]) keeps
    its type; NaN and numbers beyond a float (1e999) are not JSON and stay strings."""
    out: dict[str, Any] = {}
    for p in pairs:
        key, sep, value = p.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{p!r} is not KEY=VALUE", param_hint=what)
        out[key.strip()] = value
        if typed:
            try:
                out[key.strip()] = json.loads(value, parse_constant=_not_json,
                                              parse_float=_finite)
            except ValueError:
                pass
    return out


def job_dict(job: Job) -> dict[str, Any]:
    return {"id": job.id, "name": job.defn.name, "site": job.context.site,
            "state": job.state.value if job.state else None, "exit_code": job.exit_code,
            "workflow_id": job.context.workflow_id, "parent_id": job.context.parent_id,
            "originator_id": job.context.originator_id, "native_id": job.context.native_id,
            "created": job.created.isoformat(), "triggered_by": job.triggered_by,
            "started": job.started.isoformat() if job.started else None,
            "ended": job.ended.isoformat() if job.ended else None}


def jobs_table(jobs: list[dict[str, Any]]) -> None:
    """Jobs as :func:`job_dict` gives them (the light read path gives the same dicts)."""
    print_table(("id", "name", "site", "state", "exit", "created"),
                ((j["id"][:8], j["name"], j["site"], j["state"] or "-", j["exit_code"],
                  j["created"][:19].replace("T", " ")) for j in jobs))


@command("run", context_settings={"ignore_unknown_options": True})
@click.option("--site", default="local", show_default=True, help="Configured site to run on.")
@click.option("--shell", "kind", flag_value="shell", help="COMMAND is one shell string.")
@click.option("--python", "kind", flag_value="python", help="COMMAND is package.module:function.")
@click.option("--name", default="", help="A name for the job.")
@click.option("--workflow", "workflow_id", help="Workflow id the job belongs to.")
@click.option("--parent", "parent_id", help="Parent job id.")
@click.option("--env", "env", multiple=True, metavar="KEY=VALUE", help="Environment variable.")
@click.option("--cwd", type=click.Path(exists=True, file_okay=False), help="Working directory.")
@click.option("--wait", "do_wait", is_flag=True, help="Wait for the job to end; exit 1 unless COMPLETE.")
@click.option("--retries", type=click.IntRange(min=0), default=0,
              help="Run it again, up to N times, while it ends FAILED (each attempt is a job).")
@click.option("--backoff", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Seconds to wait before each retry.")
@json_option
@click.argument("command_", nargs=-1, required=True, type=click.UNPROCESSED, metavar="COMMAND...")
@with_manager
def run_cmd(m, site: str, kind: str | None, name: str, workflow_id: str | None,
            parent_id: str | None, env: tuple[str, ...], cwd: str | None, do_wait: bool,
            retries: int, backoff: float, as_json: bool, command_: tuple[str, ...]) -> None:
    """Run COMMAND as a job (use -- before a command with options). With --wait and
    --retries, it waits for the last attempt."""
    k = EntryKind(kind or "argv")
    entry: Any = list(command_) if k is EntryKind.ARGV else " ".join(command_)
    defn = JobDefn(entry=entry, kind=k, name=name, site=site, cwd=cwd,
                   env=parse_pairs(env, "--env", typed=False),
                   retries=Retries(count=retries, backoff_s=backoff) if retries else None)
    fut = m.submit(defn, parent_id=parent_id, workflow_id=workflow_id)
    job = fut.snapshot()
    if do_wait:
        try:
            job = fut.wait()
        except KeyboardInterrupt:
            raise LwfmError(f"stopped waiting; job {job.id} runs on "
                            f"(lwfm wait {job.id[:8]}, lwfm cancel {job.id[:8]})") from None
    if as_json:
        echo_json(job_dict(job))
    else:
        click.echo(job.id if not do_wait else f"{job.id} {job.state.value}")
    if do_wait and job.state is not State.COMPLETE:
        raise SystemExit(1)


@command("status")
@click.argument("job_id")
@click.option("--history", is_flag=True, help="Show every status report.")
@json_option
@click.pass_context
def status_cmd(ctx: click.Context, job_id: str, history: bool, as_json: bool) -> None:
    """Show a job's current state (and its history)."""
    from ._lite import light_status
    found = light_status(ctx.find_root().obj.get("home"), job_id, history)
    if found is None:  # the light path cannot answer exactly: the Manager's
        m = get_manager(ctx)
        jid = m.store.resolve_job_id(job_id)
        try:
            job = m.status(jid)
        except NotFound:  # a job a trigger has yet to start
            tr = m.store.trigger_for_job(jid)
            if tr is None:
                raise
            if as_json:
                echo_json({"id": jid, "state": None, "trigger": tr.to_dict()})
            else:
                click.echo(f"{jid}  not started: trigger {tr.id} is {tr.status.value}"
                           + (f" ({tr.reason})" if tr.reason else ""))
            return
        found = job_dict(job), m.history(job.id) if history else []
    d, hist = found
    if as_json:
        if history:
            d["history"] = [s.to_dict() for s in hist]
        echo_json(d)
        return
    click.echo(f"{d['id']}  {d['state'] or '-'}  {d['name']}  site={d['site']}"
               + ("" if d["exit_code"] is None else f"  exit={d['exit_code']}"))
    if d["state"] == State.PENDING.value and (note := get_manager(ctx).start_note(d["id"])):
        click.echo(f"  {note}")  # fired by its trigger, not started yet
    for s in hist:
        click.echo(f"  {s.time.isoformat()}  {s.state.value:<9} {s.info or s.native_state or ''}")


@command("jobs")
@click.option("--workflow", "workflow", metavar="ID|NAME",
              help="Workflow id, unique id prefix or name.")
@click.option("--site")
@click.option("--state", type=click.Choice([s.value for s in State], case_sensitive=False))
@click.option("--limit", type=click.IntRange(min=0), default=None)
@json_option
@click.pass_context
def jobs_cmd(ctx: click.Context, workflow: str | None, site: str | None, state: str | None,
             limit: int | None, as_json: bool) -> None:
    """List jobs, filtered by workflow, site or state."""
    from ._lite import light_jobs
    st = state.upper() if state else None
    rows = light_jobs(ctx.find_root().obj.get("home"), workflow, site, st, limit)
    if rows is None:  # the light path cannot answer exactly: the Manager's
        m = get_manager(ctx)
        wid = resolve_workflow(m, workflow) if workflow else None  # a typo is an error
        m.reconcile()  # no finished job is listed as running
        rows = [job_dict(j) for j in m.store.find_jobs(workflow_id=wid, site=site, state=st,
                                                       limit=limit)]
    if as_json:
        echo_json(rows)
    else:
        jobs_table(rows)


@command("wait")
@click.argument("job_ids", nargs=-1, required=True)
@click.option("--timeout", type=click.FloatRange(min=0), default=None,
              help="Seconds to wait at most.")
@json_option
@with_manager
def wait_cmd(m, job_ids: tuple[str, ...], timeout: float | None, as_json: bool) -> None:
    """Wait for jobs to end (a retried job: its last attempt); exit 1 unless all COMPLETE."""
    from ..futures import wait_all
    try:
        jobs = wait_all([m.future(m.store.resolve_job_id(j)) for j in job_ids], timeout=timeout)
    except TimeoutError as e:
        raise LwfmError(str(e)) from None
    if as_json:
        echo_json([job_dict(j) for j in jobs])
    else:
        for j in jobs:
            click.echo(f"{j.id} {j.state.value}")
    if any(j.state is not State.COMPLETE for j in jobs):
        raise SystemExit(1)


@command("cancel")
@click.argument("job_id")
@with_manager
def cancel_cmd(m, job_id: str) -> None:
    """Cancel a job (works from any process); a retried job's current attempt and the
    retries still due."""
    jid = m.store.resolve_job_id(job_id)
    click.echo(f"{jid} {'cancelled' if m.future(jid).cancel() else 'had already ended'}")


@command("log")
@click.argument("job_id")
@with_manager
def log_cmd(m, job_id: str) -> None:
    """Print a job's output (stdout and stderr) and its lwfm log lines."""
    jid = m.store.resolve_job_id(job_id)
    click.echo(m.log(jid), nl=False)
    for rec in m.store.logs(job_id=jid):
        click.echo(f"[lwfm {rec.time.isoformat()} {rec.level}] {rec.message}", err=True)


def _meta_options(f):
    f = click.option("--meta", "meta", multiple=True, metavar="KEY=VALUE",
                     help="Metadata field (repeatable).")(f)
    f = click.option("--site", default="local", show_default=True)(f)
    f = click.option("--job", "job_id", help="Job the data belongs to (default: $LWFM_JOB_ID).")(f)
    return json_option(f)


def _transfer(m, verb: str, src: str, dst: str, meta: tuple[str, ...], site: str,  # noqa: ANN001
              job_id: str | None, as_json: bool) -> None:
    """put and get: the same recording, the same output; only the direction differs."""
    d = getattr(m, verb)(src, dst, site=site, metadata=parse_pairs(meta, "--meta"),
                         job_id=m.store.resolve_job_id(job_id) if job_id else None)
    echo_json(d.to_dict()) if as_json else click.echo(f"{d.id} {d.url} sha256={d.sha256}")


@command("put")
@click.argument("local_file", type=click.Path(exists=True, dir_okay=False))
@click.argument("dest")
@_meta_options
@with_manager
def put_cmd(m, local_file: str, dest: str, **kw: Any) -> None:
    """Copy LOCAL_FILE to DEST on a site and record it with metadata."""
    _transfer(m, "put", local_file, dest, **kw)


@command("get")
@click.argument("source")
@click.argument("local_file", type=click.Path(dir_okay=False))
@_meta_options
@with_manager
def get_cmd(m, source: str, local_file: str, **kw: Any) -> None:
    """Copy SOURCE from a site to LOCAL_FILE and record it."""
    _transfer(m, "get", source, local_file, **kw)


@command("find")
@click.argument("pattern", nargs=-1)
@click.option("--workflow", "workflow", metavar="ID|NAME",
              help="Workflow id, unique id prefix or name.")
@click.option("--job", "job_id", help="Job id or unique id prefix.")
@json_option
@with_manager
def find_cmd(m, pattern: tuple[str, ...], workflow: str | None, job_id: str | None,
             as_json: bool) -> None:
    """Find data by metadata: KEY=VALUE (exact) or KEY='glob*' per field, ANDed."""
    found = m.find(parse_pairs(pattern, "PATTERN"),
                   workflow_id=resolve_workflow(m, workflow) if workflow else None,
                   job_id=m.store.resolve_job_id(job_id) if job_id else None)
    if as_json:
        echo_json([d.to_dict() for d in found])
        return
    print_table(("id", "url", "site", "dir", "job", "metadata"),
                ((d.id[:8], d.url, d.site, d.direction.value, (d.job_id or "")[:8],
                  json.dumps(d.metadata, sort_keys=True)) for d in found))


@command("sites")
@json_option
@with_manager
def sites_cmd(m, as_json: bool) -> None:
    """List configured sites, the pillars each has, and installed site drivers."""

    from ..registry import drivers
    rows = [{"name": n, "driver": str(m.config.site_config(n).get("driver", n))}
            for n in m.site_names()]
    pillars: dict[str, list[str]] = {}
    problems: dict[str, str] = {}   # a site whose driver is missing or misconfigured
    for r in rows:
        try:
            pillars[r["name"]] = list(m.site(r["name"]).pillars())
        except LwfmError as e:
            problems[r["name"]] = str(e)
    if as_json:
        echo_json({"sites": rows, "pillars": pillars, "problems": problems,
                   "drivers": sorted(drivers())})
        return
    print_table(("site", "driver", "pillars"),
                ((r["name"], r["driver"], ", ".join(pillars[r["name"]]) if r["name"] in pillars
                  else f"error: {problems[r['name']]}") for r in rows))
    click.echo("installed drivers: " + ", ".join(sorted(drivers())))


@command("workflows")
@json_option
@with_manager
def workflows_cmd(m, as_json: bool) -> None:
    """List workflows."""
    m.reconcile()
    wfs = m.workflows()
    if as_json:
        echo_json([w.to_dict() for w in wfs])
        return
    print_table(("id", "name", "description", "created"),
                ((w.id, w.name, w.description, w.created.strftime("%Y-%m-%d %H:%M:%S"))
                 for w in wfs))


@command("triggers")
@click.option("--status", type=click.Choice(["pending", "fired", "dead"]))
@json_option
@with_manager
def triggers_cmd(m, status: str | None, as_json: bool) -> None:
    """List triggers; dead ones say why they can no longer fire."""
    trs = m.store.triggers(status=status)
    if as_json:
        echo_json([tr.to_dict() for tr in trs])
        return
    print_table(("id", "kind", "status", "watch/pattern", "fires job", "deadline", "reason"),
                ((tr.id[:8], _kind(tr), tr.status.value,
                  ",".join(w[:8] for w in tr.watch) if tr.watch else
                  " + ".join(json.dumps(p) for p, _ in tr.data_inputs()),
                  tr.job_id[:8], tr.deadline.strftime("%Y-%m-%d %H:%M:%S") if tr.deadline else "",
                  tr.reason or "") for tr in trs))


def _kind(tr: Any) -> str:
    """A trigger's kind as a user thinks of it: a retry, a k-of-n join, a data future."""
    if tr.retry_of:
        return f"retry {tr.attempt}"
    if tr.at_least is not None:
        return f"{tr.at_least}-of-{len(tr.watch)}"
    return tr.kind.value + (f" ({len(tr.inputs)} futures)" if tr.inputs else
                            " (future)" if tr.producer else "")


@command("serve")
@click.option("--interval", type=float, default=0.05, show_default=True,
              help="Seconds between journal reads.")
@click.option("--http", "http", metavar="[HOST:]PORT", default=None, is_flag=False,
              flag_value="127.0.0.1:8765",
              help="Also serve the web panel (default 127.0.0.1:8765; needs lwfm[web]).")
@click.option("--allow-cancel", is_flag=True, help="Web panel: allow cancelling jobs.")
@with_manager
def serve_cmd(m, interval: float, http: str | None, allow_cancel: bool) -> None:
    """Run the manager loop: fire pending triggers, track jobs (Ctrl-C to stop)."""
    if http is not None:
        from .web import serve_http
        return serve_http(m, http, allow_cancel=allow_cancel, interval=interval)
    if allow_cancel:
        raise click.UsageError("--allow-cancel is for the web panel: give --http too")
    click.echo(f"lwfm serving {m.home} (instance {m.instance_id}); Ctrl-C to stop", err=True)
    stop = threading.Event()
    try:
        m.serve(stop=stop, interval=interval)
    except KeyboardInterrupt:
        stop.set()


@command("demo")
@click.option("--quiet", is_flag=True, help="Print only the final summary (JSON).")
@with_manager
def demo_cmd(m, quiet: bool) -> None:
    """Run a small end-to-end workflow and show its digital thread."""
    from ..demo import run_demo
    summary = run_demo(m, echo=(lambda *_: None) if quiet else click.echo)
    if quiet:
        echo_json(summary)
    if not summary["joined"]:
        raise LwfmError("the demo's lineage did not reach the local launch job: the remote "
                        "thread did not join the local one")
