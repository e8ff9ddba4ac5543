"""The panel's lifecycle: one object starts the manager loop and the HTTP server, and
its close() stops both (and the event streams), so nothing it started outlives it."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from ..errors import InvalidInput, LwfmError
from .app import PanelState, make_app
from .security import Guard, is_loopback, load_token, new_csrf

log = logging.getLogger("lwfm.web")
_JOIN_S = 10.0


class WebPanel:
    """``lwfm serve --http``: the manager loop plus the web app on ``host:port``.

    ``port`` 0 picks a free port (see :attr:`url`). Off loopback a token is required
    (see :mod:`lwfm.web.security`); ``require_token`` asks for it on loopback too."""

    def __init__(self, manager: Any, host: str = "127.0.0.1", port: int = 8765, *,
                 allow_cancel: bool = False, require_token: bool = False,
                 loop_interval: float = 0.05):
        import uvicorn
        self.manager = manager
        self.host, self.port = host, port
        self.loopback = is_loopback(host)
        self.token = load_token(manager.home) if (require_token or not self.loopback) else None
        self.state = PanelState(manager=manager, allow_cancel=allow_cancel, csrf=new_csrf())
        app = Guard(make_app(self.state), token=self.token, loopback=self.loopback,
                    csrf=self.state.csrf)
        self._server = uvicorn.Server(uvicorn.Config(
            app, host=host, port=port, log_level="warning", access_log=False, lifespan="off",
            timeout_graceful_shutdown=2, server_header=False))
        self._interval = loop_interval
        self._loop_stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._closed = False

    @property
    def url(self) -> str:
        """The panel's address (after start: with the port actually bound)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.bound_port}/"

    @property
    def bound_port(self) -> int:
        for s in getattr(self._server, "servers", []) or []:
            for sock in s.sockets:
                return int(sock.getsockname()[1])
        return self.port

    def start(self, timeout: float = 15.0) -> "WebPanel":
        """Start the manager loop and the server; returns once it listens."""
        if self._threads:
            raise LwfmError("this panel is already started")
        self.manager.ensure_open()
        loop = threading.Thread(target=self.manager.serve, name="lwfm-web-manager-loop",
                                kwargs={"stop": self._loop_stop, "interval": self._interval},
                                daemon=True)
        http = threading.Thread(target=self._server.run, name="lwfm-web-http", daemon=True)
        self._threads = [loop, http]
        loop.start()
        http.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not http.is_alive():
                self.close()
                raise InvalidInput(f"the panel could not listen on {self.host}:{self.port} "
                                   "(port in use, or an address this machine does not have?)")
            if time.monotonic() > deadline:
                self.close()
                raise LwfmError(f"the panel did not start listening within {timeout:.0f} s")
            time.sleep(0.02)
        return self

    def close(self) -> None:
        """Stop the event streams, the server, then the manager loop (the Manager itself
        belongs to whoever opened it)."""
        if self._closed:
            return
        self._closed = True
        self.state.stop.set()
        self._server.should_exit = True
        self._loop_stop.set()
        for th in self._threads:
            th.join(_JOIN_S)
            if th.is_alive():
                log.error("%s did not stop within %.0f s", th.name, _JOIN_S)

    def __enter__(self) -> "WebPanel":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
