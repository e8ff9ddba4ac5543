"""The one rule for text lwfm hands to a process or the filesystem and records: UTF-8
text without NUL. Job definitions (``JobDefn.check_plain``) and file paths
(``lwfm.files``) are checked by it, so what runs is what is recorded. Stdlib-only.
"""

from __future__ import annotations

from typing import Any, Mapping

from .errors import InvalidInput


def shown(text: str) -> str:
    """``text`` quoted for an error message, a NUL as ``\\0`` and each byte Python smuggled
    in as a lone surrogate (surrogateescape) as ``\\xe9``."""
    out = []
    for c in text:
        o = ord(c)
        out.append("\\0" if o == 0 else f"\\x{o - 0xDC00:02x}" if 0xDC80 <= o <= 0xDCFF
                   else f"\\u{o:04x}" if 0xD800 <= o <= 0xDFFF else c)
    return "'" + "".join(out) + "'"


def check_text(value: str, what: str) -> None:
    """The one rule for text lwfm hands to a process and records: UTF-8 text without NUL.

    Refused, never carried: a NUL ends a C string, so the job would run ``a`` but the
    record say ``a\\0b``; a byte that is not UTF-8 (a lone surrogate from the OS) cannot be
    stored, projected or exported as the same bytes. Either would make the record lie."""
    if "\0" in value:
        raise InvalidInput(f"{what} {shown(value)} contains a NUL character, which no "
                           "argument, variable or file name can carry (it would be cut short "
                           "there, yet recorded whole): remove it")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{what} {shown(value)} is not UTF-8 text: lwfm records exactly "
                           "what it runs and copies, in UTF-8, so it refuses other bytes; use "
                           "a UTF-8 name or value") from None


def check_texts(value: Any, what: str) -> None:
    """:func:`check_text` on every string in a JSON-like value, keys included."""
    if isinstance(value, str):
        check_text(value, what)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            if isinstance(k, str):
                check_text(k, f"{what} key")
            check_texts(v, f"{what}[{k!r}]")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_texts(v, f"{what}[{i}]")
