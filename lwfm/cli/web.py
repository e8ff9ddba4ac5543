"""``lwfm serve --http``: the manager loop plus the web panel, until Ctrl-C."""

from __future__ import annotations

import threading
from typing import Any

import click

from ..errors import ConfigError


def serve_http(m: Any, bind: str, *, allow_cancel: bool, interval: float) -> None:
    try:
        from ..web import WebPanel, parse_bind
    except ImportError as e:
        raise ConfigError(f"the web panel needs the web extra: pip install 'lwfm[web]' ({e})") from None
    host, port = parse_bind(bind)
    panel = WebPanel(m, host, port, allow_cancel=allow_cancel, loop_interval=interval)
    with panel:
        url = panel.url
        if panel.token is not None:   # its path, never the token itself: stderr may be logged
            url += f"?token=$(cat {m.home / 'web-token'})"
        click.echo(f"lwfm serving {m.home} (instance {m.instance_id}) at {url}"
                   f"{'' if allow_cancel else ' (read-only)'}; Ctrl-C to stop", err=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
