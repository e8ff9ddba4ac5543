"""What keeps the panel private: where it binds, who may read it, who may act.

- Loopback by default. Any other bind needs a token: generated once, kept in the home
  with mode 0600, asked for as ``Authorization: Bearer`` or once as ``?token=`` (which
  sets an HttpOnly, SameSite=Strict cookie); anything else gets 401.
- On a loopback bind the Host header must name loopback too: a web page elsewhere
  cannot reach the panel by pointing its own domain name at 127.0.0.1 (DNS rebinding).
- A POST (the only one is cancel) needs the page's CSRF token in a header and, when the
  browser sends one, an Origin that is this panel's.
- Every answer carries a Content-Security-Policy with no inline script, and none
  carries CORS headers: other origins can neither script nor read the panel.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qsl, urlencode

from ..errors import InvalidInput

TOKEN_FILE = "web-token"
COOKIE = "lwfm_token"
CSRF_HEADER = "x-csrf-token"
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8765
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
           (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY"),
           (b"cross-origin-opener-policy", b"same-origin"),
           (b"cross-origin-resource-policy", b"same-origin")]


def parse_bind(text: str) -> tuple[str, int]:
    """``PORT``, ``HOST:PORT`` or ``[V6]:PORT`` -> (host, port)."""
    host, port = DEFAULT_HOST, text.strip()
    if port.startswith("["):
        host, _, port = port[1:].partition("]")
        port = port.removeprefix(":")
    elif ":" in port:
        host, _, port = port.rpartition(":")
    if not port.isdigit() or not 0 <= int(port) <= 65535 or not host:
        raise InvalidInput(f"--http takes [HOST:]PORT (e.g. 8765 or 0.0.0.0:8765), not {text!r}")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is a loopback one (a name is resolved)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError as e:
        raise InvalidInput(f"cannot bind the panel to {host!r}: {e}") from None
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def load_token(home: Path) -> str:
    """The panel's token: made on first use, mode 0600, never logged."""
    p = home / TOKEN_FILE
    try:
        text = p.read_text().strip()
        if text:
            if p.stat().st_mode & 0o077:
                os.chmod(p, 0o600)
            return text
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(32)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    os.chmod(p, 0o600)
    return token


@dataclass
class Guard:
    """The checks above, as ASGI middleware around the app."""

    app: Callable[..., Awaitable[None]]
    token: str | None           # None: loopback bind, no token asked
    loopback: bool
    csrf: str

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            return await _plain(send, *refusal)
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        if self.token is not None and "token" in query:   # the link printed at start-up
            rest = urlencode([(k, v) for k, v in query.items() if k != "token"])
            where = scope["path"] + (f"?{rest}" if rest else "")
            cookie = f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
            return await _plain(send, 303, "to the panel", [(b"location", where.encode()),
                                                            (b"set-cookie", cookie.encode())])

        async def secured(msg: dict[str, Any]) -> None:
            if msg["type"] == "http.response.start":
                msg["headers"] = [h for h in msg.get("headers", [])
                                  if not h[0].lower().startswith(b"access-control-")] + HEADERS
            await send(msg)
        await self.app(scope, receive, secured)

    def _refusal(self, scope: dict[str, Any], h: dict[str, str]) -> tuple[int, str] | None:
        host = h.get("host", "")
        if self.loopback and _hostname(host) not in ("127.0.0.1", "localhost", "::1"):
            return 421, "this panel answers only to a loopback Host (127.0.0.1 or localhost)"
        if self.token is not None and not self._authorized(scope, h):
            return 401, ("a token is needed: open the link `lwfm serve --http` printed, or "
                         "send 'Authorization: Bearer TOKEN' (TOKEN is in the home's web-token)")
        if scope["method"] not in ("GET", "HEAD"):
            origin = h.get("origin")
            if origin is not None and _hostport(origin) != host:
                return 403, "a request from another origin is refused"
            if not hmac.compare_digest(h.get(CSRF_HEADER, ""), self.csrf):
                return 403, "missing or wrong CSRF token (reload the page)"
        return None

    def _authorized(self, scope: dict[str, Any], h: dict[str, str]) -> bool:
        assert self.token is not None
        auth = h.get("authorization", "")
        if auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].strip(), self.token):
            return True
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        if hmac.compare_digest(query.get("token", ""), self.token):
            return True
        cookies = dict(p.strip().partition("=")[::2] for p in h.get("cookie", "").split(";"))
        return hmac.compare_digest(cookies.get(COOKIE, ""), self.token)


def _hostname(host: str) -> str:
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def _hostport(origin: str) -> str:
    return origin.split("://", 1)[-1].rstrip("/")


async def _plain(send: Any, status: int, text: str,
                 extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = (text + "\n").encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode())]
                + (extra or []) + HEADERS})
    await send({"type": "http.response.body", "body": body})


def new_csrf() -> str:
    return secrets.token_urlsafe(24)
