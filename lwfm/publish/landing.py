"""The landing page (``ro-crate-preview.html``) and its FAIR Signposting links.

A person reads the page without JavaScript: title, creators, license, the files with
their checksums and a picture of the thread (inline SVG). A machine follows the same
facts as typed links: ``<link>`` elements in the page and a linkset JSON document
(RFC 9264), per https://signposting.org/FAIR/.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from .crate import Facts

LINKSET = "linkset.json"
PICTURE_MAX_JOBS = 40


def signposts(f: Facts) -> list[dict[str, str]]:
    """The page's typed links: (rel, href, optional type/profile)."""
    links = [{"rel": "cite-as", "href": f.identifier},
             {"rel": "describedby", "href": "ro-crate-metadata.json",
              "type": "application/ld+json", "profile": "https://w3id.org/ro/crate/1.1"},
             {"rel": "describedby", "href": "../metadata/datacite.xml",
              "type": "application/vnd.datacite.datacite+xml"},
             {"rel": "describedby", "href": "../metadata/datacite.json",
              "type": "application/vnd.datacite.datacite+json"},
             {"rel": "license", "href": f.license.url},
             {"rel": "type", "href": "https://schema.org/Dataset"},
             {"rel": "type", "href": "https://schema.org/AboutPage"},
             {"rel": "linkset", "href": LINKSET, "type": "application/linkset+json"}]
    links += [{"rel": "author", "href": c.iri} for c in f.creators]
    links += [{"rel": "item", "href": x.rel, "type": x.row.media_type or "application/octet-stream"}
              for x in f.files]
    return links


def linkset(f: Facts) -> bytes:
    """The same links as a linkset (``application/linkset+json``), anchored at the page."""
    rels: dict[str, list[dict[str, str]]] = {}
    for link in signposts(f):
        if link["rel"] == "linkset":
            continue
        target = {k: v for k, v in link.items() if k != "rel"}
        rels.setdefault(link["rel"], []).append(target)
    doc = {"linkset": [{"anchor": "ro-crate-preview.html", **rels}]}
    return json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n"


def _picture(jobs: list[tuple[str, str, list[str], list[str]]], names: dict[str, str]) -> str:
    """The thread as SVG: one row per job, inputs on the left, outputs on the right."""
    shown = jobs[:PICTURE_MAX_JOBS]
    row, w = 34, 900
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{row * len(shown) + 20}"'
             ' role="img" aria-label="the thread: jobs with the data they used and made"'
             ' font-family="sans-serif" font-size="12">']
    for k, (_, name, used, made) in enumerate(shown):
        y = 10 + k * row
        ins = ", ".join(names.get(i, i[9:17]) for i in used)[:40]
        outs = ", ".join(names.get(i, i[9:17]) for i in made)[:40]
        parts.append(f'<text x="280" y="{y + 16}" text-anchor="end">{escape(ins)}</text>')
        if ins:
            parts.append(f'<line x1="285" y1="{y + 12}" x2="330" y2="{y + 12}" stroke="#555"/>')
        parts.append(f'<rect x="330" y="{y}" width="240" height="24" rx="5" fill="#dbe9f6" '
                     f'stroke="#2a6cb0"/><text x="450" y="{y + 16}" text-anchor="middle">'
                     f'{escape(name[:34])}</text>')
        if outs:
            parts.append(f'<line x1="570" y1="{y + 12}" x2="615" y2="{y + 12}" stroke="#555"/>'
                         f'<text x="620" y="{y + 16}">{escape(outs)}</text>')
    parts.append("</svg>")
    more = (f"<p>Showing the first {len(shown)} of {len(jobs)} jobs; the crate metadata "
            "holds them all.</p>") if len(jobs) > len(shown) else ""
    return "".join(parts) + more


def page(f: Facts, jobs: list[tuple[str, str, list[str], list[str]]], names: dict[str, str],
         summary: dict[str, Any]) -> bytes:
    """The landing page HTML (no script)."""
    head = "\n".join(
        "<link " + " ".join(f'{k}="{escape(v)}"' for k, v in link.items()) + ">"
        for link in signposts(f))
    creators = ", ".join(f'<a href="{escape(c.iri)}">{escape(c.name)}</a>' for c in f.creators)
    rows = "\n".join(
        f"<tr><td><a href=\"{escape(x.rel)}\">{escape(x.rel)}</a></td><td>{x.digests.size}</td>"
        f"<td><code>{x.digests.sha256}</code></td></tr>" for x in f.files)
    kw = (f"<p><b>Keywords:</b> {escape(', '.join(f.keywords))}</p>" if f.keywords else "")
    prev = (f'<p><b>Previous version:</b> <a href="{escape(f.previous)}">{escape(f.previous)}'
            "</a></p>" if f.previous else "")
    html = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{escape(f.title)}</title>
{head}
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}}
td,th{{text-align:left;padding:2px 8px}} code{{font-size:85%}}</style>
</head><body>
<h1>{escape(f.title)}</h1>
<p><b>Creators:</b> {creators}</p>
<p><b>Identifier:</b> <a href="{escape(f.identifier)}">{escape(f.identifier)}</a>
&middot; <b>Version:</b> {f.version} &middot; <b>Published:</b> {escape(f.date_published)}</p>
<p><b>License:</b> <a href="{escape(f.license.url)}">{escape(f.license.name)}</a>
({escape(f.license.id)})</p>
{kw}{prev}
<p>{escape(f.description)}</p>
<h2>Files</h2>
<table><tr><th>file</th><th>bytes</th><th>sha256</th></tr>
{rows}
</table>
<h2>How they were made</h2>
<p>{summary['jobs']} jobs on {summary['sites']} site(s), {summary['data']} data objects
(inputs and intermediates are referenced by checksum in
<a href="ro-crate-metadata.json">ro-crate-metadata.json</a>).</p>
{_picture(jobs, names)}
<h2>Metadata</h2>
<ul><li><a href="ro-crate-metadata.json">RO-Crate metadata</a> (Provenance Run Crate 0.5)</li>
<li><a href="../metadata/datacite.xml">DataCite XML</a>,
<a href="../metadata/datacite.json">DataCite JSON</a></li>
<li><a href="{LINKSET}">Signposting linkset</a></li></ul>
</body></html>
"""
    return html.encode()
