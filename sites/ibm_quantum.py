"""The ``ibm_quantum`` site: circuits on IBM Quantum backends, or on their local fakes.

Configure::

    [sites.manila]
    driver = "ibm_quantum"
    backend = "FakeManilaV2"        # a fake (local mode, no account) or a real backend name
    # channel = "ibm_quantum_platform"   instance = "crn:..."   (real backends)
    # token_env = "QISKIT_IBM_TOKEN"     where the token is; else the saved account is used
    # execution_mode = "job"             or "batch" / "session": the site's runtime jobs
    #                                    are grouped in one Batch or Session
    # requirements = ["qiskit==1.2.4", "qiskit-ibm-runtime==0.29.0", "qiskit-aer==0.15.1"]
    #                                    run the qiskit calls in a venv sandbox (the venv
    #                                    site's machinery; python, venv_dir,
    #                                    system_site_packages, build_timeout as there)

A job is ``JobDefn(kind="circuit", site="manila", entry={"qasm": "OPENQASM 2.0; ...",
"shots": 1000})`` (see ``_quantum_payload`` for every key). The site transpiles it for the
backend, submits it through the runtime primitives, records the runtime job id as the
native id, and when it ends records the circuit the job used and the JSON result it put
(``_quantum_results``). The token never leaves the kernel's environment: it is not read
from lwfm.toml (a ``token`` key there is refused), nor sent, logged or recorded.

Local-mode jobs live in the process that submitted them (its watcher reports them), so
that process must wait for them; a real backend's jobs are also asked from elsewhere.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from lwfm.errors import ConfigError, InvalidInput, LwfmError, NotSupported, SiteError
from lwfm.model import EntryKind, JobContext, JobDefn, JobStatus, State
from lwfm.site import Auth, Run, Site, SiteHost, Spin

from . import _quantum_payload as payload
from . import _quantum_results as results
from ._qkernel.lwfm_qkernel import EXECUTION_MODES, is_fake
from ._quantum_kernel import Kernel
from .local import LocalRepo

log = logging.getLogger("lwfm.ibm_quantum")

#: runtime job states (local mode's enum names and the service's strings) -> lwfm's
STATES = {"INITIALIZING": State.PENDING, "QUEUED": State.PENDING, "VALIDATING": State.PENDING,
          "RUNNING": State.RUNNING, "DONE": State.COMPLETE, "CANCELLED": State.CANCELLED,
          "ERROR": State.FAILED, "UNKNOWN": State.UNKNOWN}
SAVED_ACCOUNT = Path("~/.qiskit/qiskit-ibm.json")
CANCEL_REQUEST = "cancel-requested"   # in a job's result dir: another process asked
CANCEL_CHECK_S = 0.25


class QuantumAuth(Auth):
    """Local mode needs nothing; a real backend needs the token in ``token_env`` or a
    saved qiskit-ibm-runtime account, which the kernel reads itself."""

    def __init__(self, site: "IBMQuantumSite"):
        self.site = site

    def login(self, force: bool = False) -> None:
        if not self.site.local:
            self.site.kernel.call("backends")   # builds the service: a bad token fails here

    def is_current(self) -> bool:
        return self.site.local or bool(os.environ.get(self.site.token_env)) or \
            SAVED_ACCOUNT.expanduser().is_file()


class QuantumSpin(Spin):
    def __init__(self, site: "IBMQuantumSite"):
        self.site = site

    def compute_types(self) -> list[str]:
        return []

    def backends(self) -> list[dict[str, Any]]:
        """Name, qubits and status of each backend (the fakes in local mode)."""
        return self.site.kernel.call("backends")


class _Active:
    __slots__ = ("ctx", "defn", "circuit", "info", "state")

    def __init__(self, ctx: JobContext, defn: JobDefn, circuit: payload.Circuit,
                 info: dict[str, Any]):
        self.ctx, self.defn, self.circuit, self.info = ctx, defn, circuit, info
        self.state = "QUEUED"


class QuantumRun(Run):
    """Runtime jobs, watched by one thread per site that records each one's end."""

    poll_interval = 1.0
    resource_keys = frozenset()

    def __init__(self, site: "IBMQuantumSite"):
        self.site = site
        self.detach = not site.local      # a local-mode job dies with its submitter
        self._active: dict[str, _Active] = {}     # native id -> job
        self._by_job: dict[str, str] = {}         # lwfm job id -> native id
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def submit(self, defn: JobDefn, ctx: JobContext) -> JobStatus:
        if defn.kind is not EntryKind.CIRCUIT:
            self.site.check_request(defn)    # another kind, called directly: refused as the Manager would
        circuit = payload.parse(defn.entry, self.site.host.lookup_data)
        where = self.site.kernel.describe()
        info = self.site.kernel.call("submit", circuit.request)
        native = info["runtime_job_id"]
        ctx.native_id = native
        with self._lock:
            self._active[native] = _Active(ctx, defn, circuit, info)
            self._by_job[ctx.job_id] = native
        self._ensure_watcher()
        v = where["versions"]
        return JobStatus(ctx.job_id, State.PENDING, native_state="QUEUED",
                         info=f"runtime job {native} on {info['backend']} (depth "
                              f"{info['depth']}), sandbox {where['sandbox']}: qiskit "
                              f"{v.get('qiskit')}, qiskit-ibm-runtime {v.get('qiskit-ibm-runtime')}, "
                              f"qiskit-aer {v.get('qiskit-aer')}")

    def supervises(self, job_id: str) -> bool:
        return job_id in self._by_job

    def status(self, ctx: JobContext) -> JobStatus:
        if not ctx.native_id:
            return JobStatus(ctx.job_id, State.PENDING)
        with self._lock:
            act = self._active.get(ctx.native_id)
        native = act.state if act is not None else \
            self.site.kernel.call("poll", [ctx.native_id]).get(ctx.native_id, "UNKNOWN")
        st = STATES.get(native, State.UNKNOWN)
        info = None
        if st is State.UNKNOWN and self.site.local:
            info = "local-mode runtime job unknown here: it lived in the process that submitted it"
        return JobStatus(ctx.job_id, st, native_state=native, info=info)

    def cancel(self, ctx: JobContext) -> bool:
        if not ctx.native_id:
            return False
        with self._lock:
            act = self._active.get(ctx.native_id)
        if act is None and self.site.local:
            return self._ask_submitter(ctx)
        stopped = bool(self.site.kernel.call("cancel", ctx.native_id))
        self._wake.set()
        return stopped

    def _ask_submitter(self, ctx: JobContext) -> bool:
        """A local-mode job runs in the process that submitted it: leave it a cancel
        request, which its watcher acts on within ``CANCEL_CHECK_S``. True if that job
        has not ended yet (it has no result file)."""
        job_dir = self.site.result_dir(ctx.job_id)
        if (job_dir / "result.json").exists():
            return False
        job_dir.mkdir(parents=True, exist_ok=True)
        (job_dir / CANCEL_REQUEST).write_text(ctx.native_id or "")
        return True

    def _cancel_requests(self) -> None:
        """Cancel the jobs another process asked to (``lwfm cancel`` from a shell)."""
        with self._lock:
            acts = list(self._active.items())
        for native, act in acts:
            if (self.site.result_dir(act.ctx.job_id) / CANCEL_REQUEST).exists():
                try:
                    self.site.kernel.call("cancel", native)
                except LwfmError as e:
                    log.warning("site %s: cancelling job %s: %s", self.site.name,
                                act.ctx.job_id, e)

    def log(self, ctx: JobContext) -> str:
        raise NotSupported("a circuit job keeps no log; its result is a data object "
                           "(lwfm find --job ID)")

    # -- the watcher ------------------------------------------------------------------
    def _ensure_watcher(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, daemon=True,
                                                name=f"lwfm-quantum-{self.site.name}")
                self._thread.start()
        self._wake.set()

    def _watch(self) -> None:
        delay = 0.002
        checked = time.monotonic()
        while not self._stop.is_set():
            if self.site.local and time.monotonic() - checked > CANCEL_CHECK_S:
                checked = time.monotonic()
                self._cancel_requests()
            with self._lock:
                natives = list(self._active)
            if not natives:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            try:
                states = self.site.kernel.call("poll", natives)
            except LwfmError as e:
                log.warning("site %s: cannot poll runtime jobs: %s", self.site.name, e)
                self._stop.wait(1.0)
                continue
            moved = False
            for native, state in states.items():
                moved |= self._moved(native, state)
            delay = 0.002 if moved else min(delay * 2, 0.1)
            self._wake.wait(delay)
            self._wake.clear()

    def _moved(self, native: str, state: str) -> bool:
        with self._lock:
            act = self._active.get(native)
        if act is None or state == act.state:
            return False
        act.state = state
        st = STATES.get(state, State.UNKNOWN)
        if st is State.UNKNOWN:   # the kernel that ran it forgot it: its sandbox worker died
            st = State.FAILED
        if not st.terminal:
            self.site.host.report(JobStatus(act.ctx.job_id, st, native_state=state))
            return True
        try:
            final = self._finish(act, st, state)
        except LwfmError as e:
            final = JobStatus(act.ctx.job_id, State.FAILED, native_state=state,
                              info=f"could not record the result: {e}")
        self.site.host.report(final)       # before letting go: no one polls it meanwhile
        with self._lock:
            self._active.pop(native, None)
            self._by_job.pop(act.ctx.job_id, None)
        try:
            self.site.kernel.call("forget", [native])
        except LwfmError:
            pass   # the kernel is going away; nothing of the job is left to keep
        return True

    def _finish(self, act: _Active, st: State, native_state: str) -> JobStatus:
        """Record what an ended job used and produced; its last status (reported after
        its data, so a trigger on its end finds the result)."""
        job_id = act.ctx.job_id
        if native_state not in STATES or STATES[native_state] is State.UNKNOWN:
            where = self.site.kernel.describe()["sandbox"]
            return JobStatus(job_id, State.FAILED, native_state=native_state,
                             info=f"the runtime job is lost: the kernel that ran it (sandbox "
                                  f"{where}) no longer knows it; was its worker killed?")
        if st is not State.COMPLETE:
            info = None
            if st is State.FAILED:
                try:
                    self.site.kernel.call("result", act.ctx.native_id)
                except LwfmError as e:
                    info = str(e)
            return JobStatus(job_id, st, native_state=native_state, info=info)
        try:
            res = self.site.kernel.call("result", act.ctx.native_id)
        except LwfmError as e:
            return JobStatus(job_id, State.FAILED, native_state=native_state, info=str(e))
        host = self.site.host
        job_dir = self.site.result_dir(job_id)
        host.record_data(results.used_circuit(job_id, act.circuit, job_dir))
        d = host.record_data(results.result_object(job_id, act.defn.name, act.circuit, act.info,
                                                   self.site.kernel.describe(), res, job_dir))
        return JobStatus(job_id, State.COMPLETE, native_state=native_state, exit_code=0,
                         info=f"result {d.id} ({act.info['backend']}, {act.info['shots']} shots)")

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(10.0)
        with self._lock:
            left = list(self._active.values())
        for act in left:
            if self.site.local:
                log.warning("site %s: job %s was still running in local mode when its "
                            "Manager closed; it ends unrecorded", self.site.name, act.ctx.job_id)


class IBMQuantumSite(Site):
    """Circuits on one IBM Quantum backend (or a fake), maybe from a venv sandbox."""

    def __init__(self, host: SiteHost):
        super().__init__(host)
        cfg = host.config
        if "token" in cfg:
            raise ConfigError(f"[sites.{host.name}] must not hold the token: set it in the "
                              "environment (token_env, default QISKIT_IBM_TOKEN) or save a "
                              "qiskit-ibm-runtime account")
        backend = cfg.get("backend")
        if not isinstance(backend, str) or not backend.strip():
            raise ConfigError(f"[sites.{host.name}] needs backend: a real backend name or "
                              "a fake such as FakeManilaV2 (local mode)")
        mode = cfg.get("execution_mode", "job")
        if mode not in EXECUTION_MODES:
            raise ConfigError(f"[sites.{host.name}] execution_mode must be one of "
                              f"{', '.join(EXECUTION_MODES)}, not {mode!r}")
        self.token_env = str(cfg.get("token_env", "QISKIT_IBM_TOKEN"))
        self.backend = backend
        self.local = is_fake(backend)
        options = {"backend": backend, "channel": cfg.get("channel"),
                   "instance": cfg.get("instance"), "token_env": self.token_env,
                   "execution_mode": mode}
        try:
            self.kernel = Kernel(host, options)
        except ConfigError:
            raise
        except (TypeError, ValueError) as e:
            raise ConfigError(f"[sites.{host.name}]: {e}") from None
        self.auth = QuantumAuth(self)
        self.quantum_run = QuantumRun(self)   # typed: the pillar slot says only Run
        self.run = self.quantum_run
        self.repo = LocalRepo(host)       # .qasm files and results live on this machine
        self.spin = QuantumSpin(self)

    def result_dir(self, job_id: str) -> Path:
        """Where a circuit job's files (its circuit, its result JSON) are written."""
        return self.host.home / "quantum" / self.name / job_id[:2] / job_id

    def check_request(self, defn: JobDefn) -> None:
        if defn.kind is not EntryKind.CIRCUIT:
            raise NotSupported(f"site {self.name!r} runs circuit jobs (kind 'circuit'), "
                               f"not {defn.kind.value} jobs")
        super().check_request(defn)
        if defn.args or defn.cwd:
            raise InvalidInput("a circuit job takes no args or cwd; its entry says all")
        payload.parse(defn.entry, self.host.lookup_data)   # refused before any record

    def close(self) -> None:
        self.quantum_run.close()
        try:
            self.kernel.close()
        except SiteError as e:
            log.warning("site %s: closing its kernel: %s", self.name, e)
