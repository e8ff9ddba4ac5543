"""How data metadata is stored and matched: one rule for SQL (find_data) and Python
(data triggers).

A string value is stored as is (typed = false); any other value as canonical JSON
(typed = true), so the string "3" and the number 3 stay different values. A pattern
value with ``*``, ``?`` or ``[`` is a case-sensitive glob over one field; anything
else must be equal.
"""

from __future__ import annotations

import fnmatch
import json
from typing import Any, Mapping

from ..errors import InvalidInput
from . import schema as t


def meta_value(v: Any) -> tuple[str, bool]:
    """(stored text, typed): strings as they are, anything else as canonical JSON."""
    if isinstance(v, str):
        return v, False
    try:
        return json.dumps(v, sort_keys=True, allow_nan=False), True
    except (TypeError, ValueError) as e:
        raise InvalidInput(f"metadata value {v!r:.60}: not plain JSON ({e})") from None


def meta_rows_for(data_id: str, metadata: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The data_meta rows of one data object's metadata (one row per field)."""
    rows = []
    for k, v in metadata.items():
        key = str(k)
        text, typed = meta_value(v)
        if len(key) > 255 or "\x00" in key or "\x00" in text:
            raise InvalidInput(f"metadata key {key[:40]!r}: keys must be at most 255 "
                               "characters, and keys and string values must not contain "
                               "NUL characters")
        rows.append({"data_id": data_id, "key": key, "value": text, "typed": typed,
                     "vhash": t.value_hash(text)})
    return rows


def is_glob(v: Any) -> bool:
    return isinstance(v, str) and any(ch in v for ch in "*?[")


def matches(value: Any, glob: str) -> bool:
    """Case-sensitive glob match of one metadata value."""
    if value is None:
        return False
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return fnmatch.fnmatchcase(text, glob)


def field_matches(metadata: Mapping[str, Any], key: str, want: Any) -> bool:
    """One field of a metadata pattern, by the same rule find_data applies in SQL."""
    if key not in metadata:
        return False
    if is_glob(want):
        return matches(metadata[key], want)
    return meta_value(metadata[key]) == meta_value(want)
