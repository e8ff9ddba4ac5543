"""An export as a Provenance Run Crate: the thread's jobs as the steps of a workflow.

The exported thread is one ComputationalWorkflow (``#workflow``, also a HowTo) whose
steps are its job definitions: one HowToStep per distinct definition (the entry point
lwfm runs, ``instrument`` of every job that ran it; its tool is that
SoftwareApplication). lwfm is the engine: an OrganizeAction (``#organize``) whose result
is the run of the workflow (``#run``, a CreateAction with the thread's first start and
last end) and whose objects are one ControlAction per step, each naming the job runs of
that step. A job fired by a trigger says so on its own entity (``lwfm:triggeredBy``).
That is a few entities per definition, not per job: a 100k-job export stays as fast.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from lwfm import __version__

PROCESS = "https://w3id.org/ro/wfrun/process/0.5"
WORKFLOW = "https://w3id.org/ro/wfrun/workflow/0.5"
PROVENANCE = "https://w3id.org/ro/wfrun/provenance/0.5"
PROFILES = {PROCESS: "Process Run Crate", WORKFLOW: "Workflow Run Crate",
            PROVENANCE: "Provenance Run Crate"}
MAIN = "workflow.json"   # the steps' job definitions, a file of the bundle
RUN = "#run"
ENGINE = "#lwfm"
LANGUAGE = "#lwfm-job-definitions"


@dataclass
class Runs:
    """Which job ran which entry point, and the thread's time span, gathered as job
    entities are rendered (by this process or an export worker)."""

    by_app: dict[str, list[str]] = field(default_factory=dict)
    defns: dict[str, Any] = field(default_factory=dict)   # app -> its (first) job definition
    start: str | None = None
    end: str | None = None

    def add(self, e: dict[str, Any]) -> None:
        app = e["instrument"]["@id"]
        if app not in self.by_app:
            self.by_app[app] = []
            self.defns[app] = json.loads(e["lwfm:record"])["job"]["defn"]
        self.by_app[app].append(e["@id"])
        s, t = e.get("startTime"), e.get("endTime")
        if s and (self.start is None or s < self.start):
            self.start = s
        if t and (self.end is None or t > self.end):
            self.end = t

    def to_json(self) -> dict[str, Any]:
        return {"by_app": self.by_app, "defns": self.defns, "start": self.start, "end": self.end}

    def update(self, d: dict[str, Any]) -> None:
        """A worker's runs (workers hold contiguous slices, merged in order)."""
        for app, jobs in d["by_app"].items():
            self.by_app.setdefault(app, []).extend(jobs)
            self.defns.setdefault(app, d["defns"][app])
        if d["start"] and (self.start is None or d["start"] < self.start):
            self.start = d["start"]
        if d["end"] and (self.end is None or d["end"] > self.end):
            self.end = d["end"]


def workflow_document(runs: Runs, apps: dict[str, str]) -> bytes:
    """``workflow.json``: the steps, each a job definition (secrets already redacted)."""
    steps = [{"step": i, "tool": app, "name": apps.get(app, app), "definition": runs.defns[app],
              "runs": len(runs.by_app[app])} for i, app in enumerate(sorted(runs.by_app))]
    return json.dumps({"lwfm": __version__, "steps": steps}, sort_keys=True,
                      separators=(",", ":")).encode()


def workflow_entities(runs: Runs, apps: dict[str, str], title: str) -> list[dict[str, Any]]:
    """The workflow, its steps, its run and lwfm's orchestration of it."""
    steps = sorted(runs.by_app)
    step_id = {app: f"#step-{i}" for i, app in enumerate(steps)}
    out: list[dict[str, Any]] = [
        {"@id": MAIN, "@type": ["File", "SoftwareSourceCode", "ComputationalWorkflow", "HowTo"],
         "name": f"lwfm thread: {title}", "programmingLanguage": {"@id": LANGUAGE},
         "encodingFormat": "application/json",
         "hasPart": [{"@id": a} for a in steps], "step": [{"@id": step_id[a]} for a in steps]},
        {"@id": LANGUAGE, "@type": "ComputerLanguage", "name": "lwfm job definitions",
         "version": __version__},
        {"@id": ENGINE, "@type": "SoftwareApplication", "name": "lwfm", "version": __version__,
         "url": "https://w3id.org/lwfm"},
        {"@id": RUN, "@type": "CreateAction", "name": f"run of {title}",
         "instrument": {"@id": MAIN}, "startTime": runs.start, "endTime": runs.end},
        {"@id": "#organize", "@type": "OrganizeAction", "name": "lwfm orchestration",
         "instrument": {"@id": ENGINE}, "result": {"@id": RUN},
         "object": [{"@id": f"#control-{i}"} for i in range(len(steps))]},
    ]
    for i, app in enumerate(steps):   # names are the tools' (a 100k-step export stays small)
        out.append({"@id": step_id[app], "@type": "HowToStep", "position": str(i),
                    "workExample": {"@id": app}})
        out.append({"@id": f"#control-{i}", "@type": "ControlAction",
                    "instrument": {"@id": step_id[app]},
                    "object": [{"@id": j} for j in runs.by_app[app]]})
    for p, name in PROFILES.items():
        out.append({"@id": p, "@type": "CreativeWork", "name": name, "version": "0.5"})
    return out
