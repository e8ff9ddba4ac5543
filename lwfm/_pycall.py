"""Run a Python job: ``python -m lwfm._pycall package.module:function [args...]``.

The function is imported by name and called with the job's string arguments; its
return value, if not None, is printed as JSON. Nothing is evaluated from text.
"""

from __future__ import annotations

import importlib
import json
import sys


def main(argv: list[str]) -> int:
    if not argv or ":" not in argv[0]:
        print("usage: python -m lwfm._pycall package.module:function [args...]", file=sys.stderr)
        return 2
    module, _, func = argv[0].partition(":")
    target = importlib.import_module(module)
    for part in func.split("."):
        target = getattr(target, part)
    result = target(*argv[1:])
    if result is not None:
        print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
