"""A fake of the Globus cloud (Auth and Transfer), for the offline globus-site tests.

The Globus cloud cannot be reached from here, so the tests answer globus-sdk's requests
through the ``responses`` library, the way ``globus_sdk.testing`` does: its shipped
fixtures where they exist (``get_submission_id``; the submit_transfer and cancel_task
bodies are used as templates), and, for what it does not ship (get_task, task_event_list,
task_successful_transfers, operation_ls, the token grants), documents shaped after
Globus's published API (docs.globus.org/api/transfer, /api/auth). A transfer really
copies bytes between directories standing for collections, so checksums are real.
Sockets are blocked (pytest-socket) while the fake is on: nothing reaches the network.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs, urlparse

import pytest
import responses
from globus_sdk.testing import get_response_set, load_response
from pytest_socket import disable_socket, enable_socket

TRANSFER = "https://transfer.api.globus.org/v0.10"
AUTH = "https://auth.globus.org"
RS = "transfer.api.globus.org"


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S+00:00")


def _sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@dataclass
class Task:
    id: str
    source: str
    destination: str
    items: list[dict[str, Any]]
    verify_checksum: bool
    sync_level: Any
    scenario: dict[str, Any]
    label: str = ""
    status: str = "ACTIVE"
    polls: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    moved: list[dict[str, Any]] = field(default_factory=list)
    fatal_error: dict[str, Any] | None = None


class FakeGlobus:
    """Collections are directories (``roots``); the local collection is this machine ('/')."""

    def __init__(self, rsps: responses.RequestsMock, tmp: Path):
        self.rsps = rsps
        self.archive = str(uuid.uuid4())
        self.other = str(uuid.uuid4())
        self.local = str(uuid.uuid4())
        self.client_id = str(uuid.uuid4())
        self.roots: dict[str, Path] = {self.archive: tmp / "archive-collection",
                                       self.other: tmp / "other-collection",
                                       self.local: Path("/")}
        for p in self.roots.values():
            p.mkdir(exist_ok=True)
        self.tasks: dict[str, Task] = {}
        self.scenario: dict[str, Any] = {}     # applied to the next submitted task
        self.issued: list[str] = []            # every token string handed out
        self.refreshes = 0
        self.consent_required: list[str] = []  # scopes a submit demands consent to
        self.flaky_polls = 0                   # the next N get_task answer 503
        self.requested_scopes: list[str] = []
        self._install()

    # -- helpers for tests ------------------------------------------------------------
    def path(self, collection: str, gpath: str) -> Path:
        return self.roots[collection] / gpath.lstrip("/")

    def task(self) -> Task:
        return list(self.tasks.values())[-1]

    # -- the routes -------------------------------------------------------------------
    def _install(self) -> None:
        r = self.rsps
        load_response("transfer.get_submission_id", requests_mock=r)   # shipped fixture
        r.add_callback("POST", f"{AUTH}/v2/oauth2/token", self._token)
        r.add_callback("POST", f"{TRANSFER}/transfer", self._submit)
        r.add_callback("GET", re.compile(rf"{TRANSFER}/task/[^/]+/event_list.*"), self._events)
        r.add_callback("GET", re.compile(rf"{TRANSFER}/task/[^/]+/successful_transfers.*"),
                       self._moved)
        r.add_callback("POST", re.compile(rf"{TRANSFER}/task/[^/]+/cancel"), self._cancel)
        r.add_callback("GET", re.compile(rf"{TRANSFER}/task/[^/?]+(\?.*)?$"), self._get_task)
        r.add_callback("GET", re.compile(rf"{TRANSFER}/operation/endpoint/[^/]+/ls.*"), self._ls)

    @staticmethod
    def _json(status: int, body: Any) -> tuple[int, dict[str, str], str]:
        return status, {"Content-Type": "application/json"}, json.dumps(body)

    def _error(self, status: int, code: str, message: str, resource: str,
               **extra: Any) -> tuple[int, dict[str, str], str]:
        return self._json(status, {"code": code, "message": message, "request_id": "fake1",
                                   "resource": resource, **extra})

    def _token(self, req: Any) -> tuple[int, dict[str, str], str]:
        form = {k: v[0] for k, v in parse_qs(req.body if isinstance(req.body, str)
                                             else req.body.decode()).items()}
        access = "AT-" + uuid.uuid4().hex
        self.issued.append(access)
        body: dict[str, Any] = {"access_token": access, "expires_in": 172800,
                                "resource_server": RS, "token_type": "Bearer",
                                "scope": "urn:globus:auth:scope:transfer.api.globus.org:all",
                                "state": "_default", "other_tokens": []}
        if form.get("grant_type") == "authorization_code":
            if form.get("code") != "good-code" or not form.get("code_verifier"):
                return self._json(401, {"error": "invalid_grant"})
            refresh = "RT-" + uuid.uuid4().hex
            self.issued.append(refresh)
            body["refresh_token"] = refresh
        elif form.get("grant_type") == "refresh_token":
            if form.get("refresh_token") not in self.issued:
                return self._json(401, {"error": "invalid_grant"})
            self.refreshes += 1
            body["refresh_token"] = form["refresh_token"]
        else:
            return self._json(400, {"error": "unsupported_grant_type"})
        return self._json(200, body)

    def _authorized(self, req: Any) -> bool:
        header = req.headers.get("Authorization", "")
        return header.startswith("Bearer ") and header[7:] in self.issued

    def _submit(self, req: Any) -> tuple[int, dict[str, str], str]:
        if not self._authorized(req):
            return self._error(401, "AuthenticationFailed", "Token is not valid", "/transfer")
        if self.consent_required:
            return self._error(403, "ConsentRequired",
                               "Missing required data_access consent", "/transfer",
                               required_scopes=list(self.consent_required))
        doc = json.loads(req.body)
        tid = str(uuid.uuid4())
        t = Task(tid, doc["source_endpoint"], doc["destination_endpoint"], doc["DATA"],
                 bool(doc.get("verify_checksum")), doc.get("sync_level"), dict(self.scenario),
                 label=doc.get("label", ""))
        self.scenario = {}
        self.tasks[tid] = t
        body = dict(get_response_set("transfer.submit_transfer").lookup("default").json)
        body.update(task_id=tid, submission_id=doc.get("submission_id"))
        return self._json(202, body)

    def _tid(self, req: Any) -> str:
        return urlparse(req.url).path.split("/task/")[1].split("/")[0]

    def _get_task(self, req: Any) -> tuple[int, dict[str, str], str]:
        if self.flaky_polls > 0:
            self.flaky_polls -= 1
            return self._error(503, "ServiceUnavailable", "try again", "/task")
        t = self.tasks.get(self._tid(req))
        if t is None:
            return self._error(404, "TaskNotFound", "no such task", "/task")
        t.polls += 1
        if t.status == "ACTIVE":
            self._advance(t)
        return self._json(200, {
            "DATA_TYPE": "task", "task_id": t.id, "type": "TRANSFER", "status": t.status,
            "nice_status": "OK" if t.status == "ACTIVE" else None, "label": t.label,
            "source_endpoint_id": t.source, "destination_endpoint_id": t.destination,
            "verify_checksum": t.verify_checksum, "sync_level": 3, "files": len(t.items),
            "files_transferred": len(t.moved), "faults": sum(e["is_error"] for e in t.events),
            "fatal_error": t.fatal_error, "request_time": _now(),
            "completion_time": None if t.status == "ACTIVE" else _now()})

    def _event(self, t: Task, code: str, description: str, details: str, error: bool) -> None:
        t.events.insert(0, {"DATA_TYPE": "event", "code": code, "is_error": error,
                            "description": description, "details": details, "time": _now()})

    def _advance(self, t: Task) -> None:
        """One step of the task: faults keep it ACTIVE (Globus retries them), else it copies."""
        sc = t.scenario
        if sc.get("faults"):
            if t.polls == 1:
                for code, desc in sc["faults"]:
                    self._event(t, code, desc, f"on {t.destination}", True)
            if t.polls < sc.get("recover_at", 1 << 30):
                return
        if t.polls < sc.get("active_polls", 1):
            return
        for item in t.items:
            src = self.path(t.source, item["source_path"])
            dst = self.path(t.destination, item["destination_path"])
            want = item.get("external_checksum")
            if want and _sha256(src) != want:
                self._event(t, "VERIFY_CHECKSUM", "checksum verification failed",
                            f"{item['source_path']}: the source does not match the "
                            "external checksum", True)
                return
            if dst.is_file() and t.sync_level == 3 and _sha256(dst) == _sha256(src):
                continue   # checksum sync: already there, skipped
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            if sc.get("corrupt"):   # the storage changed it after Globus checked it
                dst.write_bytes(b"X" + dst.read_bytes()[1:])
            t.moved.append({"DATA_TYPE": "successful_transfer",
                            "source_path": item["source_path"],
                            "destination_path": item["destination_path"]})
        t.status = "SUCCEEDED"
        self._event(t, "SUCCEEDED", "succeeded", "", False)

    def _events(self, req: Any) -> tuple[int, dict[str, str], str]:
        t = self.tasks[self._tid(req)]
        return self._json(200, {"DATA_TYPE": "event_list", "DATA": t.events, "limit": 100,
                                "offset": 0, "total": len(t.events), "has_next_page": False})

    def _moved(self, req: Any) -> tuple[int, dict[str, str], str]:
        t = self.tasks[self._tid(req)]
        return self._json(200, {"DATA_TYPE": "successful_transfers", "DATA": t.moved,
                                "marker": None, "next_marker": None})

    def _cancel(self, req: Any) -> tuple[int, dict[str, str], str]:
        t = self.tasks[self._tid(req)]
        body = dict(get_response_set("transfer.cancel_task").lookup("default").json)
        if t.status != "ACTIVE":
            body.update(code="TaskComplete", message="The task completed before it could be "
                                                     "cancelled")
        else:
            t.status = "FAILED"
            t.fatal_error = {"code": "CANCELED", "description": "canceled"}
        body["resource"] = f"/task/{t.id}/cancel"
        return self._json(200, body)

    def _ls(self, req: Any) -> tuple[int, dict[str, str], str]:
        u = urlparse(req.url)
        coll = u.path.split("/endpoint/")[1].split("/")[0]
        path = parse_qs(u.query).get("path", ["/"])[0]
        d = self.path(coll, path)
        if not d.is_dir():
            return self._error(404, "ClientError.NotFound", f"Directory '{path}' not found",
                               f"/operation/endpoint/{coll}/ls")
        entries = [{"DATA_TYPE": "file", "name": p.name, "type": "dir" if p.is_dir() else "file",
                    "size": p.stat().st_size, "link_target": None, "permissions": "0644",
                    "user": "me", "group": "me",
                    "last_modified": "2026-12-02 06:00:00+00:00"} for p in sorted(d.iterdir())]
        return self._json(200, {"DATA_TYPE": "file_list", "DATA": entries, "path": path,
                                "endpoint": coll, "length": len(entries), "total": len(entries)})


@pytest.fixture
def fake_globus(tmp_path: Path) -> Iterator[FakeGlobus]:
    """The Globus cloud, faked offline; sockets are blocked meanwhile."""
    disable_socket(allow_unix_socket=True)
    try:
        with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
            yield FakeGlobus(rsps, tmp_path)
    finally:
        enable_socket()


# -- static documents, registered as globus_sdk.testing response sets ----------------------

def register_task_documents() -> str:
    """Register, as ``globus_sdk.testing`` response sets, Globus's documented task documents
    that its fixtures do not ship (``lwfm.get_task``: active / succeeded / cancelled;
    ``lwfm.task_event_list``: faults / quiet), for the task id of the shipped cancel_task
    fixture. Returns that task id."""
    from globus_sdk.testing import RegisteredResponse, ResponseSet, register_response_set
    tid = get_response_set("transfer.cancel_task").metadata["task_id"]

    def task(status: str, **extra: Any) -> RegisteredResponse:
        return RegisteredResponse(service="transfer", path=f"/v0.10/task/{tid}", json={
            "DATA_TYPE": "task", "task_id": tid, "type": "TRANSFER", "status": status,
            "nice_status": "OK" if status == "ACTIVE" else None, "verify_checksum": True,
            "sync_level": 3, "files": 1, "faults": 0, "fatal_error": None, **extra})

    def events(*evs: tuple[str, bool]) -> RegisteredResponse:
        return RegisteredResponse(service="transfer", path=f"/v0.10/task/{tid}/event_list",
                                  json={"DATA_TYPE": "event_list", "limit": 100, "offset": 0,
                                        "total": len(evs), "has_next_page": False, "DATA": [
                                            {"DATA_TYPE": "event", "code": code,
                                             "is_error": err, "description": code.lower(),
                                             "details": "", "time": "2026-12-02 06:00:00+00:00"}
                                            for code, err in evs]})
    register_response_set("lwfm.get_task", ResponseSet(
        metadata={"task_id": tid}, active=task("ACTIVE"), succeeded=task("SUCCEEDED"),
        cancelled=task("FAILED", fatal_error={"code": "CANCELED", "description": "canceled"})))
    register_response_set("lwfm.task_event_list", ResponseSet(
        metadata={"task_id": tid}, faults=events(("ENDPOINT_DOWN", True)),
        quiet=events(("STARTED", False))))
    return tid
