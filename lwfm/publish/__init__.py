"""Publish FAIR datasets: a selection of the thread as a BagIt bag whose ``data/`` is an
RO-Crate with the provenance that made its files, DataCite metadata, a landing page
with FAIR Signposting, and an optional deposit to an InvenioRDM repository.

``publish`` is the Python API; ``lwfm publish`` (``lwfm.cli.publish``) is a thin layer
over it. Small modules, one concept each: ``licenses``, ``people``, ``selection``,
``hashing``, ``crate`` (+ ``checks``), ``datacite``, ``landing``, ``bag``, ``record``,
``invenio``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import PublishResult, publish
    from .licenses import License, check_license
    from .people import Creator, check_orcid, parse_creator
    from .selection import data_ids_from_query

# Imported on first use: the copier child (``._copier``) loads this package and must
# not pay for the store and the crate (~0.35 s) to hash files.
_WHERE = {"PublishResult": "api", "publish": "api", "License": "licenses",
          "check_license": "licenses", "Creator": "people", "check_orcid": "people",
          "parse_creator": "people", "data_ids_from_query": "selection"}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value

__all__ = ["Creator", "License", "PublishResult", "check_license", "check_orcid",
           "data_ids_from_query", "parse_creator", "publish"]
