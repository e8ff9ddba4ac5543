"""Render a thread: a rich Tree for the terminal, Graphviz dot, SVG (via the ``dot``
binary) and a self-contained HTML page embedding the SVG.

Drawn as the web panel draws it: a triggered job has an edge from every job its
trigger watched (a join shows all its inputs), a pending trigger is a dashed future
node, a dead one is marked with its reason."""

from __future__ import annotations

import html
import shutil
import subprocess

from rich.text import Text
from rich.tree import Tree

from ..errors import LwfmError
from .thread import ThreadNode

_STYLE = {"COMPLETE": ("green", "#c8e6c9"), "FAILED": ("red", "#ffcdd2"),
          "CANCELLED": ("magenta", "#e1bee7"), "RUNNING": ("yellow", "#fff9c4"),
          "FINISHING": ("yellow", "#fff9c4"), "PENDING": ("cyan", "#b2ebf2"),
          "READY": ("cyan", "#b2ebf2")}
_ARROW = {"put": "⬆ put", "get": "⬇ get", "used": "⬇ used", "child": "", "triggered": "⚡ ",
          "part": "", "retry": "↻ "}


def _line(n: ThreadNode) -> Text:
    """One node's line. Labels and sites are user text: assembled as plain spans, never
    parsed as markup (a name ending in a backslash or holding ``[/]`` shows as it is)."""
    if n.kind == "workflow":
        return Text.assemble((f"workflow {n.label}", "bold"), " ", (n.id, "dim"))
    if n.kind == "data":
        return Text.assemble((_ARROW.get(n.relation, n.relation), "blue"), f" {n.label} ",
                             (n.id[:8], "dim"))
    if n.kind == "future":
        inputs = f" after {', '.join(i[:8] for i in n.inputs)}" if n.inputs else ""
        if n.state == "dead":
            return Text.assemble(("✗ dead trigger", "red"), inputs, f": {n.reason or ''} ",
                                 (n.id[:8], "dim"))
        return Text.assemble(("⧗ future job", "cyan"), f" ({n.label}){inputs} ",
                             (n.id[:8], "dim"))
    color = _STYLE.get(n.state or "", ("white", ""))[0]
    trig = _ARROW.get(n.relation, "") if n.relation in ("triggered", "retry") else ""
    if n.inputs and not trig:
        trig = _ARROW.get("triggered", "")
    if len(n.inputs) > 1:
        trig += f"join of {', '.join(i[:8] for i in n.inputs)}: "
    site = f" @{n.site}" if n.site else ""
    return Text.assemble(trig, (n.label, "bold"), " ", (n.state or "-", color), site, " ",
                         (n.id[:8], "dim"))


def to_rich(root: ThreadNode) -> Tree:
    tree = Tree(_line(root))

    def add(parent: Tree, node: ThreadNode) -> None:
        for c in node.children:
            add(parent.add(_line(c)), c)

    add(tree, root)
    return tree


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(root: ThreadNode) -> str:
    out = ["digraph thread {", "  rankdir=LR;", '  node [fontname="Helvetica", fontsize=10];',
           f"  {_q(root.id)} [shape=folder, label={_q('workflow ' + root.label)}];"]
    for n in root.walk():
        for c in n.children:
            if c.kind == "future":
                dead = c.state == "dead"
                label = (f"dead trigger\n{c.reason or ''}" if dead else f"future job\n{c.label}")
                color = "red3" if dead else "blue3"
                out.append(f"  {_q(c.id)} [shape=box, style=\"rounded,dashed\", color={color}, "
                           f"fontcolor={color}, label={_q(label)}];")
                for i in c.inputs:
                    out.append(f"  {_q(i)} -> {_q(c.id)} [color={color}, style=dashed, "
                               f"label=\"waits\"];")
            elif c.kind == "job":
                fill = _STYLE.get(c.state or "", ("", "#eeeeee"))[1]
                label = f"{c.label}\n{c.state or '-'}" + (f" @{c.site}" if c.site else "")
                out.append(f"  {_q(c.id)} [shape=box, style=\"rounded,filled\", "
                           f"fillcolor=\"{fill}\", label={_q(label)}];")
                if c.inputs:   # every job the trigger waited on (a join: all of them)
                    why = "retry" if c.relation == "retry" else "triggered"
                    for i in c.inputs:
                        out.append(f"  {_q(i)} -> {_q(c.id)} [color=darkorange, style=dashed, "
                                   f"label=\"{why}\"];")
                    if n.id not in c.inputs:
                        out.append(f"  {_q(n.id)} -> {_q(c.id)} [color=gray40];")
                else:
                    style = (f", style=dashed, label=\"{c.relation}\""
                             if c.relation in ("triggered", "retry") else "")
                    out.append(f"  {_q(n.id)} -> {_q(c.id)} [color=gray40{style}];")
            else:
                out.append(f"  {_q(c.id)} [shape=note, label={_q(c.label)}];")
                if c.relation in ("get", "used") and n.kind == "job":
                    out.append(f"  {_q(c.id)} -> {_q(n.id)} [color=blue, label=\"used\"];")
                else:
                    out.append(f"  {_q(n.id)} -> {_q(c.id)} [color=darkgreen, label={_q(c.relation)}];")
    out.append("}")
    return "\n".join(out) + "\n"


def to_svg(root: ThreadNode) -> str:
    dot = shutil.which("dot")
    if dot is None:
        raise LwfmError("rendering SVG needs Graphviz's `dot` (apt-get install graphviz); "
                        "--format dot prints the source instead")
    r = subprocess.run([dot, "-Tsvg"], input=to_dot(root), capture_output=True, text=True,
                       timeout=120)
    if r.returncode != 0:
        raise LwfmError(f"dot failed: {r.stderr.strip()}")
    return r.stdout


def to_html(root: ThreadNode) -> str:
    svg = to_svg(root)
    svg = svg[svg.find("<svg"):]   # drop the XML prolog and doctype
    title = html.escape(f"lwfm thread: {root.label}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title>"
            f"<style>body{{font-family:sans-serif}}</style></head>\n<body><h1>{title}</h1>\n"
            f"<p>workflow {html.escape(root.id)}</p>\n{svg}\n</body></html>\n")
