"""Render a thread: a rich Tree for the terminal, Graphviz dot, SVG (via the ``dot``
binary) and a self-contained HTML page embedding the SVG."""

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
_ARROW = {"put": "⬆ put", "get": "⬇ get", "child": "", "triggered": "⚡ ", "part": "",
          "retry": "↻ "}


def _line(n: ThreadNode) -> Text:
    """One node's line. Labels and sites are user text: assembled as plain spans, never
    parsed as markup (a name ending in a backslash or holding ``[/]`` shows as it is)."""
    if n.kind == "workflow":
        return Text.assemble((f"workflow {n.label}", "bold"), " ", (n.id, "dim"))
    if n.kind == "data":
        return Text.assemble((_ARROW.get(n.relation, n.relation), "blue"), f" {n.label} ",
                             (n.id[:8], "dim"))
    color = _STYLE.get(n.state or "", ("white", ""))[0]
    trig = _ARROW.get(n.relation, "") if n.relation in ("triggered", "retry") else ""
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
            if c.kind == "job":
                fill = _STYLE.get(c.state or "", ("", "#eeeeee"))[1]
                label = f"{c.label}\n{c.state or '-'}" + (f" @{c.site}" if c.site else "")
                out.append(f"  {_q(c.id)} [shape=box, style=\"rounded,filled\", "
                           f"fillcolor=\"{fill}\", label={_q(label)}];")
                style = (f", style=dashed, label=\"{c.relation}\""
                         if c.relation in ("triggered", "retry") else "")
                out.append(f"  {_q(n.id)} -> {_q(c.id)} [color=gray40{style}];")
            else:
                out.append(f"  {_q(c.id)} [shape=note, label={_q(c.label)}];")
                if c.relation == "get" and n.kind == "job":
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
