"""What every command shares: the Manager, JSON output, tables, and error handling.

Rich is imported only when a table is printed: ``lwfm --help`` and ``--json`` never pay
for it (start-up is what a command-line user feels most).
"""

from __future__ import annotations

import json
import sys
from functools import wraps
from typing import IO, TYPE_CHECKING, Any, Callable, Iterable, Sequence

import click

from ..errors import LwfmError, NotFound

if TYPE_CHECKING:
    from rich.console import Console


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


def console(file: IO[str] | None = None, width: int | None = None) -> "Console":
    """The console rich output goes to: wide when piped (ids and IRIs are never cut with
    an ellipsis), and with no emoji codes or highlighting (``:x:`` in a name stays ``:x:``)."""
    from rich.console import Console
    opts: dict[str, Any] = {"emoji": False, "highlight": False}
    if file is not None:
        return Console(file=file, width=width or 160, **opts)
    return Console(soft_wrap=True, **opts) if sys.stdout.isatty() else Console(width=400, **opts)


def print_table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Print rows as a table. Every cell is shown verbatim: names, metadata, log lines and
    IRIs are user text, and a ``[/]`` or ``[bold]`` in one must neither crash the listing
    (rich's markup parser) nor restyle it. None is shown as an empty cell."""
    from rich.table import Column, Table
    from rich.text import Text
    t = Table(*(Column(header=Text(str(c))) for c in columns))
    for r in rows:
        t.add_row(*(Text("" if c is None else str(c)) for c in r))
    console().print(t)


def pick_workflow(text: str, workflows: Iterable[tuple[str, str]]) -> str:
    """The id of the workflow ``text`` names, among ``(id, name)`` pairs: its full id, a
    unique id prefix (any case, as users copy short ids from tables) or its exact name.
    The one rule for every command that takes a workflow (``jobs --workflow``, ``thread``)."""
    if not text:
        raise NotFound("an empty workflow id or name")
    pairs = list(workflows)
    if any(wid == text for wid, _ in pairs):
        return text
    low = text.lower()
    hits = {wid for wid, name in pairs if name == text or wid.lower().startswith(low)}
    if len(hits) == 1:
        return hits.pop()
    if not hits:
        raise NotFound(f"no workflow with id or name {text!r} (lwfm workflows lists them)")
    shown = ", ".join(sorted(h[:12] for h in hits)[:5])
    raise NotFound(f"workflow {text!r} is ambiguous: {len(hits)} workflows match by id prefix "
                   f"or name ({shown}{', ...' if len(hits) > 5 else ''}); give more of the id")


def resolve_workflow(m: Any, text: str) -> str:
    """:func:`pick_workflow` over the workflows of Manager ``m``'s store."""
    return pick_workflow(text, ((w.id, w.name) for w in m.store.find_workflows()))


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
