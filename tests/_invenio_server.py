"""A real HTTP server on loopback that implements the subset of InvenioRDM's documented
records REST API that ``lwfm publish --to`` uses.

InvenioRDM itself needs OpenSearch, Redis and RabbitMQ: far too heavy for this
machine, so the deposit tests talk to this stand-in instead. It follows the
documented drafts/records API (https://inveniordm.docs.cern.ch/reference/rest_api_drafts_records/):
``POST /api/records``, ``POST /api/records/{id}/versions``, ``GET|PUT|DELETE
/api/records/{id}/draft``, ``POST …/draft/pids/doi``, ``GET|POST …/draft/files``,
``PUT …/draft/files/{key}/content``, ``POST …/draft/files/{key}/commit``, ``DELETE
…/draft/files/{key}``, ``POST …/draft/actions/publish`` and ``GET /api/records/{id}``,
with bearer-token auth. Faults are injected on request: ``cut_upload_after`` closes the
connection part-way through a file's content; ``fail_publish`` answers 500 to the
next publish.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Draft:
    id: str
    metadata: dict[str, Any]
    parent: str
    doi: str | None = None
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    published: bool = False


class FakeInvenio:
    def __init__(self, token: str = "secret-token"):
        self.token = token
        self.records: dict[str, Draft] = {}
        self.content_puts = 0
        self.cut_upload_after: int | None = None
        self.fail_publish = 0
        self.requests: list[tuple[str, str, str]] = []  # (method, path, Authorization)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> "FakeInvenio":
        self.thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def published(self) -> list[Draft]:
        return [d for d in self.records.values() if d.published]

    def _record(self, d: Draft) -> dict[str, Any]:
        return {"id": d.id, "metadata": d.metadata, "is_published": d.published,
                "is_draft": not d.published, "parent": {"id": d.parent},
                "pids": {"doi": {"identifier": d.doi, "provider": "datacite"}} if d.doi else {},
                "links": {"self_html": f"{self.url}/records/{d.id}"}}

    def _files(self, d: Draft) -> dict[str, Any]:
        return {"enabled": True, "entries": [
            {"key": k, "status": f["status"], "size": len(f["data"]),
             **({"checksum": "md5:" + hashlib.md5(f["data"]).hexdigest()}
                if f["status"] == "completed" else {})} for k, f in d.files.items()]}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def _send(self, code: int, body: Any = None) -> None:
                raw = b"" if body is None else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _route(self, method: str) -> None:
                fake.requests.append((method, self.path, self.headers.get("Authorization", "")))
                if self.headers.get("Authorization") != f"Bearer {fake.token}":
                    self._body()
                    return self._send(403, {"status": 403, "message": "Permission denied."})
                p = self.path
                m = re.fullmatch(r"/api/records(?:/([^/]+)(/.*)?)?", p)
                if not m:
                    return self._send(404, {"status": 404, "message": "not found"})
                rid, rest = m.group(1), m.group(2) or ""
                if rid is None:
                    if method != "POST":
                        return self._send(405, {"status": 405, "message": "method"})
                    body = json.loads(self._body())
                    d = Draft(uuid.uuid4().hex[:10], body["metadata"], uuid.uuid4().hex[:10])
                    fake.records[d.id] = d
                    return self._send(201, fake._record(d))
                d = fake.records.get(rid)
                if d is None:
                    self._body()
                    return self._send(404, {"status": 404, "message": "The persistent identifier does not exist."})
                if rest == "" and method == "GET":
                    if not d.published:
                        return self._send(404, {"status": 404, "message": "not published"})
                    return self._send(200, fake._record(d))
                if rest == "/versions" and method == "POST":
                    n = Draft(uuid.uuid4().hex[:10], dict(d.metadata), d.parent)
                    fake.records[n.id] = n
                    return self._send(201, fake._record(n))
                if d.published and rest.startswith("/draft"):
                    self._body()
                    return self._send(404, {"status": 404, "message": "no draft"})
                if rest == "/draft":
                    if method == "GET":
                        return self._send(200, fake._record(d))
                    if method == "PUT":
                        d.metadata = json.loads(self._body())["metadata"]
                        return self._send(200, fake._record(d))
                    if method == "DELETE":
                        del fake.records[rid]
                        return self._send(204)
                if rest == "/draft/pids/doi" and method == "POST":
                    d.doi = d.doi or f"10.5072/fake.{d.id}"
                    return self._send(201, fake._record(d))
                if rest == "/draft/files":
                    if method == "GET":
                        return self._send(200, fake._files(d))
                    if method == "POST":
                        for e in json.loads(self._body()):
                            if e["key"] in d.files:
                                return self._send(400, {"status": 400, "message": "file exists"})
                            d.files[e["key"]] = {"status": "pending", "data": b""}
                        return self._send(201, fake._files(d))
                fm = re.fullmatch(r"/draft/files/([^/]+)(/content|/commit)?", rest)
                if fm and fm.group(1) in d.files:
                    f = d.files[fm.group(1)]
                    if fm.group(2) == "/content" and method == "PUT":
                        fake.content_puts += 1
                        n = int(self.headers["Content-Length"])
                        cut = fake.cut_upload_after
                        if cut is not None and cut < n:
                            fake.cut_upload_after = None
                            f["data"] = self.rfile.read(cut)  # a partial body: stays pending
                            self.close_connection = True
                            self.connection.shutdown(2)
                            return
                        f["data"], f["status"] = self.rfile.read(n), "pending"
                        return self._send(200, {"key": fm.group(1), "status": "pending"})
                    if fm.group(2) == "/commit" and method == "POST":
                        f["status"] = "completed"
                        return self._send(200, {"key": fm.group(1), "status": "completed",
                                                "checksum": "md5:" + hashlib.md5(f["data"]).hexdigest()})
                    if fm.group(2) is None and method == "DELETE":
                        del d.files[fm.group(1)]
                        return self._send(204)
                if rest == "/draft/actions/publish" and method == "POST":
                    if fake.fail_publish:
                        fake.fail_publish -= 1
                        return self._send(500, {"status": 500, "message": "Internal server error"})
                    if not d.doi or not d.files or any(f["status"] != "completed"
                                                       for f in d.files.values()):
                        return self._send(400, {"status": 400, "message": "files missing"})
                    d.published = True
                    return self._send(202, fake._record(d))
                self._body()
                return self._send(405, {"status": 405, "message": f"{method} {p}"})

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                self._route("POST")

            def do_PUT(self) -> None:
                self._route("PUT")

            def do_DELETE(self) -> None:
                self._route("DELETE")

        return H
