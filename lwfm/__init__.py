"""lwfm: a lightweight workflow manager with a portable provenance store.

Write a workflow once against four verbs every site implements (Auth, Run, Repo,
Spin); lwfm tracks every job and piece of data as a digital thread (PROV-O /
RO-Crate) that can be queried with SPARQL, exported and merged across instances.

The public API is what ``__all__`` lists: the model, the errors a caller may catch, the
site seam a driver implements, and the :class:`Manager`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .errors import (AuthError, BundleError, ChecksumMismatch, ConfigError, InvalidInput,
                     LwfmError, NotFound, NotSupported, QueryError, SiteError)
from .errors import JobFailed
from .errors import DepositError, PublishError
from .model import (DataObject, Direction, EntryKind, Job, JobContext, JobDefn, JobStatus, State,
                    Trigger, TriggerKind, TriggerStatus, Workflow)
from .model import Retries
from .site import Auth, Repo, Run, Site, SiteHost, Spin

if TYPE_CHECKING:  # static tools see the class; at run time it is imported on first use
    from .manager import Manager

__version__ = "0.1.0"

# A library logs; the application (or `lwfm -v`) decides where it goes.
logging.getLogger("lwfm").addHandler(logging.NullHandler())

__all__ = ["Auth", "AuthError", "BundleError", "ChecksumMismatch", "ConfigError", "DataObject",
           "Direction", "EntryKind", "InvalidInput", "Job", "JobContext", "JobDefn", "JobStatus",
           "LwfmError", "Manager", "NotFound", "NotSupported", "QueryError", "Repo", "Run",
           "Site", "SiteError", "SiteHost", "Spin", "State", "Trigger", "TriggerKind",
           "TriggerStatus", "Workflow", "__version__"]
__all__ += ["DepositError", "PublishError"]


def __getattr__(name: str):
    # The Manager pulls in SQLAlchemy: keep `import lwfm` light for site drivers and the CLI.
    if name == "Manager":
        from .manager import Manager
        return Manager
    raise AttributeError(f"module 'lwfm' has no attribute {name!r}")


# The seam's part for a Repo whose copies are jobs of their own (the globus site).
from .site import Transfers  # noqa: E402

__all__ += ["Transfers"]

# Futures (lwfm.futures) pull in the store too: imported on first use, like the Manager.
_FUTURES = ("JobFuture", "DataFuture", "wait_all", "as_completed", "wait")
__all__ += ["JobFailed", "Retries", *_FUTURES]
_manager_getattr = __getattr__


def __getattr__(name: str):  # noqa: F811 - extends the one above
    if name in _FUTURES:
        from . import futures
        return getattr(futures, name)
    return _manager_getattr(name)
