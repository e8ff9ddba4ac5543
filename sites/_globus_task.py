"""Globus transfer tasks as lwfm jobs: start, follow, judge, cancel.

A put, get or collection-to-collection copy is one Globus transfer task with
``sync_level="checksum"``, ``verify_checksum=True`` and SHA256 as the checksum
algorithm; when lwfm knows the source's sha256 it hands it to Globus as the item's
``external_checksum``, so Globus checks both ends against lwfm's own digest.

Each poll reads the task and, while it is ACTIVE or INACTIVE, its event list: Globus
keeps a task ACTIVE for hours while it retries a permission error, a down endpoint or a
full quota, so an error event is reported at once, as FAILED (the task is cancelled)
or as INFO with the fault (``on_fault = "info"``). Transient HTTP and network errors
are retried with backoff by globus-sdk's own RetryConfig (see ``GlobusTransfers.tc``).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import globus_sdk
from globus_sdk.transport import RetryConfig

from lwfm.errors import ChecksumMismatch, InvalidInput, LwfmError, SiteError
from lwfm.files import sha256_file
from lwfm.model import DataObject, Direction, EntryKind, JobContext, JobDefn, JobStatus, State
from lwfm.site import Transfers

if TYPE_CHECKING:
    from .globus import GlobusSite

log = logging.getLogger("lwfm.globus")
T = TypeVar("T")
ALGORITHM = "SHA256"   # what Globus verifies with; lwfm's own digest is sha256 too


class Unreachable(SiteError):
    """Globus did not answer, or answered a transient error, even after globus-sdk's
    retries: a follow keeps polling (with backoff) a while before it gives up."""


@dataclass
class _Follow:
    """What this process knows of a transfer it started (the others ask Globus only)."""

    defn: JobDefn
    seen: set[tuple[str, str, str]] = field(default_factory=set)   # fault events reported
    error: LwfmError | None = None
    ends: tuple[DataObject, DataObject] | None = None


class GlobusTransfers(Transfers):
    """The jobs of a Globus site: its transfer tasks (native id = the task id)."""

    def __init__(self, site: "GlobusSite"):
        self.site = site
        self.poll_interval = site.poll_interval
        self._lock = threading.Lock()
        self._following: dict[str, _Follow] = {}   # job id -> started here, not ended
        self._done: dict[str, _Follow] = {}        # job id -> ended here, ends not taken
        self._tc: globus_sdk.TransferClient | None = None

    # -- plumbing ---------------------------------------------------------------------
    @property
    def tc(self) -> globus_sdk.TransferClient:
        with self._lock:   # the manager loop's polls and a follow may ask at once
            if self._tc is None:
                retry = RetryConfig(max_retries=self.site.retries,
                                    max_sleep=self.site.max_backoff_s)
                self._tc = self.site.gauth.transfer_client(retry)
            return self._tc

    def call(self, doing: str, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """One Transfer API call (globus-sdk retries the transient ones with backoff);
        one still failing for a transient cause is :class:`Unreachable`."""
        try:
            return fn(*args, **kw)
        except globus_sdk.GlobusError as e:
            err = self.site.gauth.error(doing, e)
            transient = isinstance(e, globus_sdk.NetworkError) or (
                isinstance(e, globus_sdk.GlobusAPIError)
                and e.http_status in RetryConfig.transient_error_status_codes)
            raise (Unreachable(str(err)) if transient else err) from None

    # -- the Transfers seam -----------------------------------------------------------
    def plan(self, op: str, source: str, dest: str) -> JobDefn:
        self.site.gauth.check_logged_in()   # before any record: no job for a missing login
        repo = self.site.grepo
        entry: dict[str, Any] = {"op": op}
        if op == "put":
            path = repo.local_file(source, must_exist=True)
            entry.update(source=path.as_uri(), sha256=sha256_file(path), size=path.stat().st_size,
                         globus_source=[repo.local_collection(), str(path)])
            dst = repo.address(dest, own=True)
        elif op == "get":
            dst_path = repo.local_file(dest, must_exist=False)
            src = repo.address(source, own=True)
            entry.update(source=repo.url(*src), globus_source=list(src))
            dst = (repo.local_collection(), str(dst_path))
            entry["destination"] = dst_path.as_uri()
        elif op == "transfer":
            src = repo.address(source, own=False)
            entry.update(source=repo.url(*src), globus_source=list(src))
            dst = repo.address(dest, own=True)
        else:
            raise InvalidInput(f"unknown transfer op {op!r} (put, get or transfer)")
        entry.setdefault("destination", repo.url(*dst))
        entry["globus_destination"] = list(dst)
        name = f"globus {op} {Path(entry['globus_source'][1]).name}"
        entry["name"] = name
        return JobDefn(entry=entry, kind=EntryKind.PAYLOAD, name=name, site=self.site.name)

    def submit(self, defn: JobDefn, ctx: JobContext) -> JobStatus:
        e = defn.entry
        assert isinstance(e, dict)
        (sc, sp), (dc, dp) = e["globus_source"], e["globus_destination"]
        data = globus_sdk.TransferData(sc, dc, label=f"lwfm {ctx.job_id}",
                                       sync_level="checksum", verify_checksum=True)
        item: dict[str, Any] = {"checksum_algorithm": ALGORITHM}
        if e.get("sha256"):
            item["external_checksum"] = e["sha256"]
        data.add_item(sp, dp, **item)
        with self._lock:   # followed from now on: no other poller here
            self._following[ctx.job_id] = _Follow(defn)
        try:
            r = self.call(f"submitting the transfer {e['source']} -> {e['destination']}",
                          self.tc.submit_transfer, data)
        except BaseException:
            with self._lock:
                self._following.pop(ctx.job_id, None)
            raise
        ctx.native_id = str(r["task_id"])
        return JobStatus(ctx.job_id, State.RUNNING, native_state="ACTIVE",
                         info=f"Globus task {ctx.native_id} submitted")

    def adopt(self, defn: JobDefn, ctx: JobContext) -> None:
        with self._lock:
            if ctx.job_id in self._following:
                raise SiteError(f"transfer job {ctx.job_id} is already followed here")
            self._following[ctx.job_id] = _Follow(defn)

    def supervises(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._following

    def follow(self, ctx: JobContext) -> JobStatus:
        with self._lock:
            f = self._following[ctx.job_id]
        last: tuple[State, str | None] | None = None
        misses = 0   # polls in a row that could not reach Globus
        try:
            while True:
                try:
                    st = self._poll(ctx, f)
                    misses = 0
                except Unreachable as e:
                    misses += 1
                    if misses > self.site.retries:
                        raise SiteError(f"{e}; gave up after {misses} polls in a row (the "
                                        f"Globus task {ctx.native_id} may still be running)")
                    st = JobStatus(ctx.job_id, State.INFO, info=f"{e}; retrying")
                    time.sleep(min(self.poll_interval * 2 ** misses, 300.0))
                quiet = st.state is State.RUNNING and last is not None \
                    and last[0] in (State.RUNNING, State.INFO)
                if not quiet and (st.state, st.info) != last:
                    self.site.host.report(st)
                    last = (st.state, st.info)
                if st.state.terminal:
                    return st
                time.sleep(self.poll_interval)
        except KeyboardInterrupt:
            self.cancel(ctx)
            self.site.host.report(JobStatus(ctx.job_id, State.CANCELLED,
                                            info="interrupted: the Globus task was cancelled"))
            f.error = SiteError(f"transfer {ctx.native_id} interrupted and cancelled")
            raise
        except LwfmError as e:
            f.error = e
            st = JobStatus(ctx.job_id, State.FAILED, info=f"lost the Globus task: {e}")
            self.site.host.report(st)
            return st
        finally:
            with self._lock:
                self._following.pop(ctx.job_id, None)
                self._done[ctx.job_id] = f

    def ends(self, ctx: JobContext) -> tuple[DataObject, DataObject]:
        with self._lock:
            f = self._done.pop(ctx.job_id)
        if f.error is not None:
            raise f.error
        assert f.ends is not None
        return f.ends

    def status(self, ctx: JobContext) -> JobStatus:
        """One look (another process, or ``lwfm status``): a SUCCEEDED task is FINISHING
        until the process that started it has checked the checksums."""
        return self._poll(ctx, None)

    def cancel(self, ctx: JobContext) -> bool:
        r = self.call(f"cancelling Globus task {ctx.native_id}", self.tc.cancel_task,
                      ctx.native_id)
        return r.get("code") == "Canceled"

    def log(self, ctx: JobContext) -> str:
        events = self.call(f"reading the events of task {ctx.native_id}",
                           self.tc.task_event_list, ctx.native_id, limit=100)
        return "".join(f"{ev.get('time', '')} {'ERROR' if ev.get('is_error') else 'INFO'} "
                       f"{ev.get('code', '')}: {ev.get('description', '')}"
                       f"{' (' + ev['details'] + ')' if ev.get('details') else ''}\n"
                       for ev in reversed(list(events)))

    # -- one poll ---------------------------------------------------------------------
    def _poll(self, ctx: JobContext, f: _Follow | None) -> JobStatus:
        tid = ctx.native_id
        task = self.call(f"reading Globus task {tid}", self.tc.get_task, tid)
        status = str(task["status"])
        nice = task.get("nice_status") or status
        if status == "SUCCEEDED":
            if f is None:
                return JobStatus(ctx.job_id, State.FINISHING, native_state=status,
                                 info="the Globus task SUCCEEDED; the process that started it "
                                      "checks the checksums and records the copies (if it is "
                                      f"gone: lwfm transfer --finish {ctx.job_id})")
            return self._judge(ctx, f, task)
        if status == "FAILED":
            fatal = task.get("fatal_error") or {}
            code = str(fatal.get("code") or "")
            if code.upper() in ("CANCELED", "CANCELLED"):
                if f is not None:
                    f.error = SiteError(f"Globus task {tid} was cancelled")
                return JobStatus(ctx.job_id, State.CANCELLED, native_state=status,
                                 info=f"Globus task {tid} was cancelled")
            why = f"Globus task {tid} FAILED: {code}: {fatal.get('description', nice)}"
            if f is not None:
                f.error = SiteError(f"site {self.site.name!r}: {why}")
            return JobStatus(ctx.job_id, State.FAILED, native_state=status, info=why)
        faults = self._faults(tid, f)
        if faults:
            text = "; ".join(f"{ev.get('code')}: {ev.get('description')}"
                             f"{' (' + ev['details'] + ')' if ev.get('details') else ''}"
                             for ev in faults)
            if self.site.on_fault == "info":
                return JobStatus(ctx.job_id, State.INFO, native_state=status,
                                 info=f"Globus task {tid} is {status} with faults: {text}")
            self.call(f"cancelling Globus task {tid}", self.tc.cancel_task, tid)
            why = (f"Globus task {tid} reported faults while {status}: {text}; lwfm cancelled "
                   f"it (on_fault = \"fail\")")
            if f is not None:
                kind = ChecksumMismatch if any("CHECKSUM" in str(ev.get("code", "")).upper()
                                               for ev in faults) else SiteError
                f.error = kind(f"site {self.site.name!r}: {why}")
            return JobStatus(ctx.job_id, State.FAILED, native_state=status, info=why)
        if status == "INACTIVE":
            return JobStatus(ctx.job_id, State.INFO, native_state=status,
                             info=f"Globus task {tid} is INACTIVE: {nice}")
        return JobStatus(ctx.job_id, State.RUNNING, native_state=status)

    def _faults(self, tid: str | None, f: _Follow | None) -> list[dict[str, Any]]:
        """Error events not reported yet (all of them when this process does not follow it)."""
        events = self.call(f"reading the events of task {tid}", self.tc.task_event_list,
                           tid, limit=100)
        new = []
        for ev in reversed(list(events)):   # Globus lists the newest first; tell them in order
            if not ev.get("is_error"):
                continue
            key = (str(ev.get("time")), str(ev.get("code")), str(ev.get("details")))
            if f is not None:
                if key in f.seen:
                    continue
                f.seen.add(key)
            new.append(dict(ev))
        return new

    def _judge(self, ctx: JobContext, f: _Follow, task: Any) -> JobStatus:
        """A SUCCEEDED task: lwfm's own sha256 of what it can read, then COMPLETE or FAILED."""
        e = f.defn.entry
        assert isinstance(e, dict)
        tid = str(ctx.native_id)
        moved = self.call(f"reading what task {tid} moved", self.tc.task_successful_transfers,
                          tid)
        dst_path = e["globus_destination"][1]
        copied = any(m.get("destination_path") == dst_path for m in moved)
        sha = e.get("sha256")
        size = e.get("size")
        if e["op"] == "get":
            local = self.site.grepo.local_file(e["destination"], must_exist=False)
            if not local.is_file():
                f.error = SiteError(f"Globus task {tid} SUCCEEDED but {local} is not on this "
                                    f"machine: is [sites.{self.site.name}] local_collection the "
                                    "collection that sees this machine's files?")
                return JobStatus(ctx.job_id, State.FAILED, native_state="SUCCEEDED",
                                 info=f"the copy is not at {local}")
            got = sha256_file(local)
            if sha and got != sha:
                bad = local.with_name(f".{local.name}.lwfm-mismatch-{tid[:8]}")
                local.replace(bad)
                f.error = ChecksumMismatch(
                    f"the copy of {e['source']} at {local} has sha256 {got}, but lwfm recorded "
                    f"{sha} for the original (Globus task {tid} reported success); the bad "
                    f"copy was moved to {bad}")
                return JobStatus(ctx.job_id, State.FAILED, native_state="SUCCEEDED",
                                 info=f"checksum mismatch: sha256 {got} != {sha}")
            sha, size = got, local.stat().st_size
        verified = task.get("verify_checksum") is True   # as the task document says
        meta = {"copied_from": e["source"], "globus_task": tid,
                "globus_checksum_algorithm": ALGORITHM, "globus_verified": verified,
                "globus_sync_level": "checksum", "globus_copied": copied}
        if e.get("sha256"):
            meta["globus_external_checksum"] = e["sha256"]   # what Globus checked both ends against
        src_site = "local" if e["op"] == "put" else self.site.name
        dst_site = "local" if e["op"] == "get" else self.site.name
        original = DataObject(url=e["source"], site=src_site, direction=Direction.GET,
                              size=size, sha256=sha, metadata={"globus_task": tid})
        copy = DataObject(url=e["destination"], site=dst_site, direction=Direction.PUT,
                          size=size, sha256=sha, metadata=meta)
        f.ends = (original, copy)
        how = "copied" if copied else "already up to date (checksum sync)"
        return JobStatus(ctx.job_id, State.COMPLETE, native_state="SUCCEEDED", exit_code=0,
                         info=f"{how}; Globus verified {ALGORITHM}" +
                              (f", sha256 {sha}" if sha else ""))
