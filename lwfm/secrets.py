"""Which environment variable names hold secrets: the one rule, shared by every writer.

A job's own ``env`` reaches the job as given, but the store, the graph, a bundle and a
trigger only ever see ``<redacted>`` for a secret-looking name. The store rows, the
bundle export (and import) and the trigger check all ask :data:`SECRET_NAME`, so the
rule below is the whole story.

The rule, on a name such as ``GITHUB_PAT`` or ``dbPassword``:

1. **Words.** The name is cut into words at every non-alphanumeric character and at
   each lower-to-upper camelCase step, trailing digits dropped (``AWS_KEY2`` -> ``AWS``,
   ``KEY``). It is a secret when a word is one of :data:`SECRET_WORDS` (``KEY``, ``PAT``,
   ``PWD``, ``AUTH``, ``SESSION``, ``DSN``, ...). Whole words, so ``KEYBOARD``, ``PATH``,
   ``GIT_AUTHOR_NAME`` stay in clear.
2. **Fragments.** Or when the upper-cased name with its separators removed contains one
   of :data:`SECRET_FRAGMENTS` (``PASS``, ``SECRET``, ``TOKEN``, ``CREDENTIAL``,
   ``PRIVATE``, ``APIKEY``, ``CONNSTR``, ...), wherever it sits: ``PGPASSWORD``,
   ``api_key``, ``AZURE_STORAGE_CONNECTION_STRING``.
3. **Yours.** Or when it matches one of the shell-style globs of ``[secrets]
   extra_patterns`` in ``lwfm.toml`` (case-insensitive, the whole name: ``"*_SIG"``).
   A user pattern wins over rule 4.
4. Except the shell's own ``PWD`` and ``OLDPWD`` (the working directory).

User patterns are process-wide and only ever added (:meth:`SecretNames.add_patterns`,
called by :func:`lwfm.config.load`): the places that redact often have only a model
object, not a config (a store row, a bundle worker, a job process), and redacting one
name too many is harmless while one too few leaks. This module is stdlib-only, like
:mod:`lwfm.model`, so a driver in a foreign venv can import it.
"""

from __future__ import annotations

import fnmatch
import re
import threading
from typing import Any, Iterable, Mapping

REDACTED = "<redacted>"

#: Whole words that mark a secret (rule 1).
SECRET_WORDS = frozenset({
    "KEY", "KEYS", "PAT", "PWD", "PW", "AUTH", "OAUTH", "SESSION", "SESSIONID",
    "DSN", "JWT", "BEARER", "OTP", "SALT", "WEBHOOK", "SIGNATURE",
})
#: Fragments that mark a secret wherever they occur, separators removed (rule 2).
SECRET_FRAGMENTS = ("PASS", "SECRET", "TOKEN", "CREDENTIAL", "PRIVATE", "APIKEY",
                    "ACCESSKEY", "AUTHORIZATION", "COOKIE", "CONNSTR", "CONNECTIONSTRING")
#: Names that look like a secret by rule 1 but are the shell's working directory.
NOT_SECRET = frozenset({"PWD", "OLDPWD"})

_WORD_BREAK = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")
_SEPARATORS = re.compile(r"[^A-Za-z0-9]+")


class SecretNames:
    """The secret-name rule (see the module docstring), built-in words plus user globs.

    ``search(name)`` is the call ``re.Pattern`` offered when this was a regex; callers
    (the trigger check among them) keep using it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._extra: tuple[str, ...] = ()
        self._extra_re: re.Pattern[str] | None = None

    @property
    def extra_patterns(self) -> tuple[str, ...]:
        """The user globs added so far (from ``lwfm.toml``), in the order added."""
        return self._extra

    def add_patterns(self, patterns: Iterable[str]) -> None:
        """Add shell-style globs (``*``, ``?``, ``[...]``), matched case-insensitively
        against the whole name. Never removes any: see the module docstring."""
        new = [p for p in patterns if p not in self._extra]
        if not new:
            return
        with self._lock:
            extra = self._extra + tuple(dict.fromkeys(new))
            self._extra_re = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in extra),
                                        re.IGNORECASE)
            self._extra = extra

    def matches(self, name: str) -> bool:
        """True when ``name`` looks like it holds a secret."""
        if not isinstance(name, str):
            return False
        extra = self._extra_re
        if extra is not None and extra.match(name) is not None:
            return True
        upper = name.upper()
        if upper in NOT_SECRET:
            return False
        words = {w.upper().rstrip("0123456789") for w in _WORD_BREAK.split(name) if w}
        if not words.isdisjoint(SECRET_WORDS):
            return True
        squashed = _SEPARATORS.sub("", upper)
        return any(f in squashed for f in SECRET_FRAGMENTS)

    search = matches

    def __repr__(self) -> str:
        return f"SecretNames(extra_patterns={list(self._extra)!r})"


#: The rule every writer asks (store rows, bundles, triggers, job processes).
SECRET_NAME = SecretNames()


def is_secret_name(name: str) -> bool:
    """True when the value of environment variable ``name`` must never be recorded."""
    return SECRET_NAME.matches(name)


def redacted_env(env: Mapping[str, Any]) -> dict[str, Any]:
    """``env`` with the values of secret-looking names replaced (what lwfm records; the
    job itself runs with the real values)."""
    return {k: REDACTED if SECRET_NAME.matches(k) else v for k, v in env.items()}


def redacted_defn(defn: Any) -> Any:
    """A job definition dict with its env redacted (the same object when nothing is)."""
    if not isinstance(defn, dict):
        return defn
    env = defn.get("env")
    if isinstance(env, dict) and any(SECRET_NAME.matches(k) for k in env):
        return {**defn, "env": redacted_env(env)}
    return defn
