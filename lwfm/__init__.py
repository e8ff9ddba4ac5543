"""lwfm: a lightweight workflow manager with a portable provenance store.

Write a workflow once against four verbs every site implements (Auth, Run, Repo,
Spin); lwfm tracks every job and piece of data as a digital thread (PROV-O /
RO-Crate) that can be queried with SPARQL, exported and merged across instances.
"""

import logging

from .errors import LwfmError, NotFound
from .model import (DataObject, Direction, EntryKind, Job, JobContext, JobDefn, JobStatus, State,
                    Trigger, TriggerKind, TriggerStatus, Workflow)

__version__ = "0.1.0"

# A library logs; the application (or `lwfm -v`) decides where it goes.
logging.getLogger("lwfm").addHandler(logging.NullHandler())

__all__ = ["DataObject", "Direction", "EntryKind", "Job", "JobContext", "JobDefn", "JobStatus",
           "LwfmError", "Manager", "NotFound", "State", "Trigger", "TriggerKind", "TriggerStatus",
           "Workflow", "__version__"]


def __getattr__(name: str):
    # The Manager pulls in SQLAlchemy; keep `import lwfm.model` light for site drivers.
    if name == "Manager":
        from .manager import Manager
        return Manager
    raise AttributeError(name)
