"""SPDX license ids, checked against the list shipped with lwfm (no network at run time).

A dataset's license must be machine-actionable for the R of FAIR: an SPDX id names
one license text unambiguously, and DataCite, RO-Crate and InvenioRDM all accept it.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from lwfm.errors import PublishError


@dataclass(frozen=True)
class License:
    id: str
    name: str

    @property
    def url(self) -> str:
        """The license's SPDX page: its persistent, resolvable identifier."""
        return f"https://spdx.org/licenses/{self.id}"


@lru_cache(maxsize=1)
def _licenses() -> dict[str, dict[str, object]]:
    raw = resources.files(__package__).joinpath("spdx_licenses.json").read_text("utf-8")
    return json.loads(raw)["licenses"]


def check_license(spdx_id: str) -> License:
    """The license an SPDX id names; a wrong case is corrected, anything else refused."""
    known = _licenses()
    by_lower = {k.lower(): k for k in known}
    key = by_lower.get(spdx_id.strip().lower())
    if key is None:
        near = difflib.get_close_matches(spdx_id, list(known), n=3)
        hint = f" (did you mean {', '.join(near)}?)" if near else ""
        raise PublishError(f"--license {spdx_id!r} is not an SPDX license id{hint}; "
                           "see https://spdx.org/licenses/ (e.g. CC-BY-4.0, CC0-1.0, MIT)")
    if known[key].get("deprecated"):
        raise PublishError(f"--license {key} is a deprecated SPDX id; use its replacement "
                           "(e.g. GPL-3.0-only rather than GPL-3.0)")
    return License(key, str(known[key]["name"]))
