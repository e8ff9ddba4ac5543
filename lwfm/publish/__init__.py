"""Publish FAIR datasets: a selection of the thread as a BagIt bag whose ``data/`` is an
RO-Crate with the provenance that made its files, DataCite metadata, a landing page
with FAIR Signposting, and an optional deposit to an InvenioRDM repository.

``publish`` is the Python API; ``lwfm publish`` (``lwfm.cli.publish``) is a thin layer
over it. Small modules, one concept each: ``licenses``, ``people``, ``selection``,
``hashing``, ``crate`` (+ ``checks``), ``datacite``, ``landing``, ``bag``, ``record``,
``invenio``.
"""

from __future__ import annotations

from .api import PublishResult, publish
from .licenses import License, check_license
from .people import Creator, check_orcid, parse_creator
from .selection import data_ids_from_query

__all__ = ["Creator", "License", "PublishResult", "check_license", "check_orcid",
           "data_ids_from_query", "parse_creator", "publish"]
