"""What every command shares: the Manager, JSON output, and error handling."""

from __future__ import annotations

import json
import sys
from functools import wraps
from typing import Any, Callable

import click

from ..errors import LwfmError


def get_manager(ctx: click.Context):
    """The Manager for this invocation's home, opened once and closed at exit."""
    root = ctx.find_root()
    if "manager" not in root.obj:
        from ..manager import Manager
        root.obj["manager"] = Manager(root.obj.get("home"))
        root.call_on_close(root.obj["manager"].close)
    return root.obj["manager"]


def with_manager(f: Callable[..., Any]) -> Callable[..., Any]:
    """Pass the Manager as the first argument of a command."""
    @wraps(f)
    @click.pass_context
    def inner(ctx: click.Context, *a: Any, **kw: Any) -> Any:
        return f(get_manager(ctx), *a, **kw)
    return inner


def command_list() -> tuple[list[click.Command], Callable[..., Any]]:
    """A module's ``COMMANDS`` list and a ``@command(...)`` decorator that fills it."""
    commands: list[click.Command] = []

    def command(*a: Any, **kw: Any) -> Callable[[Callable[..., Any]], click.Command]:
        def deco(f: Callable[..., Any]) -> click.Command:
            cmd = click.command(*a, **kw)(f)
            commands.append(cmd)
            return cmd
        return deco
    return commands, command


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


def run_main(group: click.Group) -> None:
    """Run the CLI: lwfm errors become one clear line on stderr and exit status 1."""
    try:
        group.main(standalone_mode=False)
    except click.exceptions.Abort:  # click's form of Ctrl-C (and of EOF at a prompt)
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except LwfmError as e:
        click.echo(f"lwfm: error: {e}", err=True)
        sys.exit(1)
    except OSError as e:  # a path the user gave: missing, a directory, not writable, ...
        where = f": {e.filename}" if e.filename else ""
        click.echo(f"lwfm: error: {e.strerror or e}{where}", err=True)
        sys.exit(1)
