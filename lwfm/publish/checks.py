"""Profile checks a published crate must pass before anything is written or deposited.

These are the REQUIRED rules of RO-Crate 1.1 and Provenance Run Crate 0.5 that the
publish layer is responsible for (root metadata, data entities present with their
sizes, main workflow, steps, control and organize actions, no dangling local
references). They run on the entities as they stream out, in one pass, so checking
adds no second read of the crate; rocrate-validator checks the same crates in the tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lwfm.errors import PublishError

_ROOT_REQUIRED = ("name", "description", "datePublished", "license", "creator", "identifier",
                  "conformsTo")
_MAIN_TYPES = {"File", "SoftwareSourceCode", "ComputationalWorkflow"}
_ACTIONS = {"CreateAction", "ActivateAction", "UpdateAction"}
_TOOLS = {"SoftwareApplication", "SoftwareSourceCode", "ComputationalWorkflow"}
# (type of the subject, property, types one of which its target must have)
_LINKS: dict[str, list[tuple[str, set[str]]]] = {
    "ControlAction": [("instrument", {"HowToStep"}), ("object", _ACTIONS)],
    "OrganizeAction": [("instrument", _TOOLS), ("result", _ACTIONS), ("object", {"ControlAction"})],
    "HowToStep": [("workExample", _TOOLS)],
    "CreateAction": [("instrument", _TOOLS)],
}


_REF_PROPS = frozenset({"hasPart", "mainEntity", "step", "programmingLanguage", "license"})


def _ids(v: Any) -> list[str]:
    if v is None:
        return []
    if isinstance(v, dict):
        return [v["@id"]] if "@id" in v else []
    return [x["@id"] for x in v if isinstance(x, dict) and "@id" in x] if isinstance(v, list) else []


def _local(i: str) -> bool:
    """A path inside the crate (not an absolute URI, not a #fragment)."""
    return not i.startswith("#") and ":" not in i.split("/", 1)[0] and i not in ("./",)


class CrateChecker:
    """Collects what each entity claims; :meth:`finish` judges the whole crate."""

    def __init__(self, root: Path):
        self.root = root
        self.types: dict[str, set[str]] = {}
        self.links: list[tuple[str, str, str, set[str]]] = []
        self.refs: list[tuple[str, str]] = []
        self.problems: list[str] = []
        self.root_entity: dict[str, Any] | None = None
        self.descriptor = False
        self.elsewhere: dict[str, int] = {}  # files written straight into the zip: sizes

    def register(self, e: dict[str, Any]) -> None:
        """An entity of the exporter's mapping (a job or data object, ``urn:`` ids): only
        its types matter here, as targets of the links checked in :meth:`finish`."""
        t = e["@type"]
        self.types[e["@id"]] = set(t) if isinstance(t, list) else {t}

    def see(self, e: dict[str, Any]) -> None:
        i = e["@id"]
        t = e.get("@type", [])
        types = set(t if isinstance(t, list) else [t])
        if i in self.types:
            self.problems.append(f"entity {i} is described twice")
        self.types[i] = types
        if i == "./":
            self.root_entity = e
        if i == "ro-crate-metadata.json":
            self.descriptor = _ids(e.get("about")) == ["./"]
        if "File" in types and _local(i):
            self._check_file(i, e)
        for ty in types.intersection(_LINKS):
            for prop, want in _LINKS[ty]:
                targets = _ids(e.get(prop))
                if not targets:
                    self.problems.append(f"{ty} {i} has no {prop}")
                self.links += [(i, prop, x, want) for x in targets]
        for prop in _REF_PROPS.intersection(e):
            self.refs += [(i, x) for x in _ids(e[prop])]

    def _check_file(self, i: str, e: dict[str, Any]) -> None:
        if i in self.elsewhere:
            if e.get("contentSize") is not None and str(self.elsewhere[i]) != str(e["contentSize"]):
                self.problems.append(f"data entity {i}: contentSize {e['contentSize']} but "
                                     f"the zipped bag holds {self.elsewhere[i]} bytes")
            return
        p = self.root / i
        if not p.is_file():
            self.problems.append(f"data entity {i} is not a file in the crate")
        elif e.get("contentSize") is not None and str(p.stat().st_size) != str(e["contentSize"]):
            self.problems.append(f"data entity {i}: contentSize {e['contentSize']} but the file "
                                 f"has {p.stat().st_size} bytes")

    def finish(self) -> None:
        """Raise PublishError naming every failed check (nothing is kept by the caller)."""
        p = self.problems
        if not self.descriptor:
            p.append("no metadata descriptor ro-crate-metadata.json about ./")
        r = self.root_entity
        if r is None:
            p.append("no root data entity ./")
        else:
            p += [f"the root data entity has no {k}" for k in _ROOT_REQUIRED
                  if r.get(k) in (None, "", [])
                  or (isinstance(r.get(k), str) and not r[k].strip())]
            main = _ids(r.get("mainEntity"))
            if not main or not _MAIN_TYPES <= self.types.get(main[0], set()):
                p.append("the main workflow must be a File, SoftwareSourceCode and "
                         "ComputationalWorkflow in the crate")
        for src, prop, dst, want in self.links:
            if not want & self.types.get(dst, set()):
                p.append(f"{src} {prop} -> {dst}: must be one of {', '.join(sorted(want))}")
        p += [f"{src} refers to {dst}, which the crate does not describe"
              for src, dst in self.refs if (dst.startswith("#") or _local(dst))
              and dst not in self.types]
        if p:
            shown = "; ".join(p[:5]) + (f"; and {len(p) - 5} more" if len(p) > 5 else "")
            raise PublishError(f"the crate fails its profile checks (RO-Crate 1.1 / Provenance "
                               f"Run Crate 0.5): {shown}")
