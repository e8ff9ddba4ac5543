"""Write the small lwfm.toml tables the ssh tests need (tomllib only reads)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)          # a JSON string is a valid TOML basic string
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML here")


def write_sites(home: Path, sites: dict[str, dict[str, Any]]) -> Path:
    lines = []
    for name, table in sites.items():
        lines.append(f"[sites.{name}]")
        lines += [f"{k} = {_value(v)}" for k, v in table.items()]
        lines.append("")
    f = home / "lwfm.toml"
    f.write_text("\n".join(lines))
    return f
