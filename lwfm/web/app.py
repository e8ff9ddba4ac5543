"""The web app: HTML page shells, the JSON API behind them, and the event stream.

Pages are static shells filled by the page's script from the JSON API, so the API is
the one read path (and the one a script uses). Handlers are plain functions that
Starlette runs in its thread pool; the provenance graph is one per process and is
used under a lock.
"""

from __future__ import annotations

import html
import threading
from dataclasses import dataclass, field
from importlib import resources
from string import Template
from typing import Any
from urllib.parse import quote

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..errors import InvalidInput, LwfmError, NotFound, QueryError
from . import api, sse
from .graph import thread_graph

_PAGES = {"jobs": ("Jobs", ""), "job": ("Job", ""), "sites": ("Sites", ""),
          "threads": ("Threads", ""), "thread": ("Thread", "/static/vendor/cytoscape.min.js /static/thread_edges.js /static/thread.js"),
          "sparql": ("SPARQL", ""), "bundles": ("Bundles", ""), "api": ("JSON API", "")}


@dataclass
class PanelState:
    """What the handlers share: the Manager, the options, the stop flag for streams."""

    manager: Any
    allow_cancel: bool
    csrf: str
    stop: threading.Event = field(default_factory=threading.Event)
    graph_lock: threading.Lock = field(default_factory=threading.Lock)


def _template(name: str) -> Template:
    return Template(resources.files(__package__).joinpath("templates", name).read_text())


def make_app(state: PanelState) -> Starlette:
    layout = _template("layout.html")
    bodies = {p: _template(f"{p}.html") for p in _PAGES}
    m = state.manager

    def page(name: str, **values: str) -> HTMLResponse:
        title, script = _PAGES[name]
        esc = {k: html.escape(v, quote=True) for k, v in values.items()}
        scripts = "".join(f'<script src="{s}" defer></script>' for s in script.split())
        body = bodies[name].safe_substitute(esc)
        return HTMLResponse(layout.safe_substitute(
            csrf=state.csrf, allow_cancel="1" if state.allow_cancel else "0", page=name,
            title=html.escape(title), instance=html.escape(m.instance_id[:12]),
            scripts=scripts, body=body))

    def simple(name: str):  # noqa: ANN202
        return lambda request: page(name)

    def job_page(request: Request) -> HTMLResponse:
        return page("job", job_id=request.path_params["job_id"])

    def thread_page(request: Request) -> HTMLResponse:
        wid = request.path_params["workflow"]
        # quoted as encodeURIComponent would (thread.js fetches the same URL later)
        return page("thread", workflow_url=quote(wid, safe="!'()*"))

    # -- API --------------------------------------------------------------------------
    def api_jobs(request: Request) -> JSONResponse:
        q = request.query_params
        wf = q.get("workflow") or None
        f = api.JobFilter(workflow=api.resolve_workflow(m.store, wf) if wf else None,
                          site=q.get("site") or None, state=q.get("state") or None,
                          since=q.get("since") or None, until=q.get("until") or None)
        return _json(api.jobs_page(m.store, f, q.get("after") or None,
                                   _int(q.get("limit"), api.PAGE)))

    def api_job(request: Request) -> JSONResponse:
        jid = m.store.resolve_job_id(request.path_params["job_id"])
        return _json(api.job_detail(m, jid))

    def api_cancel(request: Request) -> JSONResponse:
        if not state.allow_cancel:
            return JSONResponse({"error": "this panel is read-only: start it with "
                                          "--allow-cancel to cancel jobs"}, status_code=403)
        jid = m.store.resolve_job_id(request.path_params["job_id"])
        return _json({"id": jid, "cancelled": bool(m.cancel(jid))})

    def api_sites(request: Request) -> JSONResponse:
        return _json(api.sites(m))

    def api_workflows(request: Request) -> JSONResponse:
        return _json(api.workflows(m.store))

    def api_thread(request: Request) -> JSONResponse:
        wid = api.resolve_workflow(m.store, request.path_params["workflow"])
        return _json(thread_graph(m.store, wid).to_dict())

    def api_bundles(request: Request) -> JSONResponse:
        return _json(api.bundles(m.store))

    def _sparql(text: str, fmt: str) -> Any:
        with state.graph_lock:
            return m.graph.query(text, fmt=fmt)

    def api_sparql(request: Request) -> Response:
        text = request.query_params.get("query", "")
        fmt = request.query_params.get("format", "json")
        if fmt not in ("json", "csv", "table"):
            raise InvalidInput("format is json, csv or table")
        out = _sparql(text, fmt)
        if fmt == "table":
            names, rows = out
            return _json({"columns": names, "rows": [[None if v is None else str(v) for v in r]
                                                      for r in rows]})
        media = "application/sparql-results+json" if fmt == "json" else "text/csv"
        return Response(out, media_type=media, headers={
            "content-disposition": f'attachment; filename="lwfm-query.{fmt}"'})

    def sparql_table(request: Request) -> HTMLResponse:
        """The results table the SPARQL page swaps in (htmx), escaped cell by cell."""
        try:
            names, rows = _sparql(request.query_params.get("query", ""), "table")
        except LwfmError as e:
            return HTMLResponse(f'<p class="error" role="alert">{html.escape(str(e))}</p>')
        head = "".join(f"<th>{html.escape(str(n))}</th>" for n in names)
        body = "".join("<tr>" + "".join(f"<td>{'' if v is None else html.escape(str(v))}</td>"
                                        for v in r) + "</tr>" for r in rows)
        return HTMLResponse(f'<p class="count">{len(rows)} rows</p><table class="grid">'
                            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    async def api_events(request: Request) -> StreamingResponse:
        since = request.query_params.get("since")
        return StreamingResponse(
            sse.stream(m.store, _int(since, 0) if since else None, state.stop,
                       request.is_disconnected),
            media_type="text/event-stream", headers={"cache-control": "no-store"})

    routes = [
        Route("/", simple("jobs")), Route("/jobs/{job_id}", job_page),
        Route("/sites", simple("sites")), Route("/threads", simple("threads")),
        Route("/thread/{workflow}", thread_page), Route("/sparql", simple("sparql")),
        Route("/sparql/table", sparql_table), Route("/bundles", simple("bundles")),
        Route("/api", simple("api")),
        Route("/api/jobs", api_jobs), Route("/api/jobs/{job_id}", api_job),
        Route("/api/jobs/{job_id}/cancel", api_cancel, methods=["POST"]),
        Route("/api/events", api_events), Route("/api/sites", api_sites),
        Route("/api/workflows", api_workflows), Route("/api/thread/{workflow}", api_thread),
        Route("/api/sparql", api_sparql), Route("/api/bundles", api_bundles),
        Mount("/static", StaticFiles(packages=[(__package__, "static")]), name="static"),
    ]
    return Starlette(routes=routes, exception_handlers={
        NotFound: _error(404), InvalidInput: _error(400), QueryError: _error(400),
        LwfmError: _error(500)})


def _error(status: int):  # noqa: ANN202
    async def handler(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": str(exc)}, status_code=status)
        return PlainTextResponse(str(exc), status_code=status)
    return handler


class _Json(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=str, option=orjson.OPT_NON_STR_KEYS)


def _json(obj: Any) -> JSONResponse:
    return _Json(obj)


def _int(text: str | None, default: int) -> int:
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise InvalidInput(f"{text!r} is not a whole number") from None
