"""The lwfm data model: jobs, their statuses, workflows, data notations and triggers.

Everything here is a plain dataclass that round-trips through JSON (``to_dict`` /
``from_dict``), because every record is persisted as SQL rows and shipped in bundles
as JSON-LD: nothing is ever pickled. This package is stdlib-only on purpose, so a
site driver running inside a foreign virtualenv can import it.

The records live in private modules by concept (``_base``: ids, times and the JSON round
trip; ``_states``; ``_jobs``; ``_data``; ``_triggers``); this package is their one import
surface, so import them from ``lwfm.model``.
"""

from __future__ import annotations

from ..retries import Retries  # noqa: F401 - re-exported
# Secret-looking env names (their values are never recorded): the rule is lwfm.secrets.
from ..secrets import REDACTED, SECRET_NAME, redacted_env  # noqa: F401 - re-exported
from ._base import _Record, check_json, iso, new_id, parse_time, utcnow  # noqa: F401
from ._data import DataObject, Direction  # noqa: F401
from ._jobs import (EntryKind, Job, JobContext, JobDefn, JobStatus, LogRecord,  # noqa: F401
                    Workflow, derived_name)
from ._states import _RANK, TERMINAL, State, advance  # noqa: F401
from ._triggers import Trigger, TriggerKind, TriggerStatus  # noqa: F401
