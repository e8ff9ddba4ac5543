"""A data notation (metasheet): one put or get of data by a job on a site, the edges
of lineage."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ._base import _Record, new_id, parse_time, utcnow


class Direction(str, enum.Enum):
    PUT = "put"
    GET = "get"


@dataclass
class DataObject(_Record):
    """A metasheet: one put or get of a piece of data, by a job, on a site.

    ``derived_from`` links a copy to its original (e.g. the remote file an SFTP get
    fetched), so lineage crosses sites.
    """

    url: str
    site: str = "local"
    direction: Direction = Direction.PUT
    metadata: dict[str, Any] = field(default_factory=dict)
    size: int | None = None
    sha256: str | None = None
    media_type: str | None = None
    job_id: str | None = None
    workflow_id: str | None = None
    derived_from: str | None = None
    id: str = field(default_factory=new_id)
    time: datetime = field(default_factory=utcnow)
    instance_id: str | None = None

    def __post_init__(self) -> None:
        self.direction = Direction(self.direction)
        self.time = parse_time(self.time)  # type: ignore[assignment]
