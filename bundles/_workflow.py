"""An export as a Provenance Run Crate: the thread's jobs as the steps of a workflow.

The exported thread is one ComputationalWorkflow (``workflow.json``, also a HowTo) whose
steps are its job definitions by name: one HowToStep per job name, or per program for
unnamed jobs (the runs of a parameter sweep differ in their arguments, not their step),
whose tool is the entry point its first run ran. lwfm is the engine: an OrganizeAction
(``#organize``) whose result is the run of the workflow (``#run``, a CreateAction with the thread's first start and last
end) and whose objects are one ControlAction per step, naming the jobs that ran it. A job
fired by a trigger says so on its own entity (``lwfm:triggeredBy``). That is a few
entities per step, not per job: a 100k-job export stays about as large and as fast.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from lwfm import __version__
from lwfm.model import derived_name

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
    """The thread's steps (job definitions by name: a parameter sweep's runs differ in
    their arguments, not their step) with the jobs that ran each and the tool of its first
    run, and the thread's time span, gathered as job entities are rendered (by this
    process or an export worker)."""

    jobs: dict[str, list[str]] = field(default_factory=dict)   # step name -> job IRIs
    tools: dict[str, str] = field(default_factory=dict)        # step name -> its tool
    defns: dict[str, Any] = field(default_factory=dict)        # step name -> a definition
    start: str | None = None
    end: str | None = None

    def add(self, e: dict[str, Any], name: str) -> None:
        """Job entity ``e`` ran step ``name`` (:func:`step_name`)."""
        if name not in self.jobs:
            self.jobs[name] = []
            self.tools[name] = e["instrument"]["@id"]
            self.defns[name] = json.loads(e["lwfm:record"])["job"]["defn"]
        self.jobs[name].append(e["@id"])
        s, t = e.get("startTime"), e.get("endTime")
        if s and (self.start is None or s < self.start):
            self.start = s
        if t and (self.end is None or t > self.end):
            self.end = t

    def to_json(self) -> dict[str, Any]:
        return {"jobs": self.jobs, "tools": self.tools, "defns": self.defns,
                "start": self.start, "end": self.end}

    def update(self, d: dict[str, Any]) -> None:
        """A worker's runs (workers hold contiguous slices, merged in order)."""
        for name, jobs in d["jobs"].items():
            self.jobs.setdefault(name, []).extend(jobs)
            self.tools.setdefault(name, d["tools"][name])
            self.defns.setdefault(name, d["defns"][name])
        if d["start"] and (self.start is None or d["start"] < self.start):
            self.start = d["start"]
        if d["end"] and (self.end is None or d["end"] > self.end):
            self.end = d["end"]


def step_name(defn: dict[str, Any]) -> str:
    """The step a job ran: its own name if it was given one, else (its name is the one
    lwfm derives from its entry) its program, argv's first word, so the unnamed runs of
    a sweep are one step."""
    name, entry = defn.get("name"), defn.get("entry")
    if (name and name != derived_name(str(defn.get("kind", "argv")), entry)) or \
            not (isinstance(entry, list) and entry):
        return str(name or derived_name(str(defn.get("kind", "argv")), entry))
    return str(entry[0])


def workflow_document(runs: Runs, apps: dict[str, str]) -> bytes:
    """``workflow.json``: the steps, each with the definition of its first run (secrets
    already redacted) and how many jobs ran it."""
    steps = [{"step": i, "name": name, "tool": runs.tools[name], "definition": runs.defns[name],
              "runs": len(runs.jobs[name])} for i, name in enumerate(sorted(runs.jobs))]
    return json.dumps({"lwfm": __version__, "steps": steps}, sort_keys=True,
                      separators=(",", ":")).encode()


def workflow_entities(runs: Runs, apps: dict[str, str], title: str) -> list[dict[str, Any]]:
    """The workflow, its steps, its run and lwfm's orchestration of it."""
    steps = sorted(runs.jobs)
    out: list[dict[str, Any]] = [
        {"@id": MAIN, "@type": ["File", "SoftwareSourceCode", "ComputationalWorkflow", "HowTo"],
         "name": f"lwfm thread: {title}", "programmingLanguage": {"@id": LANGUAGE},
         "encodingFormat": "application/json",
         "hasPart": [{"@id": t} for t in sorted(set(runs.tools.values()))],
         "step": [{"@id": f"#step-{i}"} for i in range(len(steps))]},
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
    for i, name in enumerate(steps):
        out.append({"@id": f"#step-{i}", "@type": "HowToStep", "name": name[:200],
                    "position": str(i), "workExample": {"@id": runs.tools[name]}})
        out.append({"@id": f"#control-{i}", "@type": "ControlAction",
                    "name": f"orchestrate {name}"[:200], "instrument": {"@id": f"#step-{i}"},
                    "object": [{"@id": j} for j in runs.jobs[name]]})
    for p, name in PROFILES.items():
        out.append({"@id": p, "@type": "CreativeWork", "name": name, "version": "0.5"})
    return out
