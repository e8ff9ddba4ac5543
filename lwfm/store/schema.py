"""SQL tables: the source of truth for everything lwfm records.

The RDF graph (``lwfm.provenance``) is a projection of these rows, fed by the
``events`` journal: every write appends ``(seq, kind, ref)`` in the same transaction,
and the projector applies events past its watermark. ``lwfm reindex`` rebuilds the
graph from the rows alone.

Times are ISO 8601 UTC strings (``lwfm.model.iso``): they sort, compare and survive
both SQLite and PostgreSQL unchanged. JSON columns hold model ``to_dict`` output.

A change to these tables needs a migration in ``lwfm/store/migrations/versions`` (Alembic)
and SCHEMA_VERSION (lwfm/_schema_version.py) set to its revision: new stores are created from these tables at that
version, older ones are upgraded on open (tests/test_store_migrations.py checks both agree).
"""

from __future__ import annotations

import hashlib

from sqlalchemy import (JSON, BigInteger, Boolean, Column, Index, Integer, MetaData,
                        PrimaryKeyConstraint, String, Table, Text)

from .._schema_version import SCHEMA_VERSION  # noqa: F401  (re-exported: t.SCHEMA_VERSION)

# A store records its version in lwfm_meta (read on every open, with the instance id, by
# one SELECT).

metadata = MetaData()

# Alembic's own bookkeeping (its format), stamped at creation so Alembic agrees with
# lwfm_meta. Not in ``metadata``: it is not lwfm's data.
alembic_version = Table(
    "alembic_version", MetaData(),
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)


def value_hash(text: str) -> str:
    """Index key of a metadata value (see ``data_meta``)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


# Integer primary keys autoincrement on SQLite (rowid) and PostgreSQL (identity).
_Seq = BigInteger().with_variant(Integer(), "sqlite")

meta = Table(
    "lwfm_meta", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

workflows = Table(
    "workflows", metadata,
    Column("id", String(64), primary_key=True),
    Column("name", Text, nullable=False, default=""),
    Column("description", Text, nullable=False, default=""),
    Column("props", JSON, nullable=False, default=dict),
    Column("created", String(40), nullable=False),
    Column("instance_id", String(64), nullable=False),
)

jobs = Table(
    "jobs", metadata,
    Column("id", String(64), primary_key=True),
    Column("name", Text, nullable=False),
    Column("defn", JSON, nullable=False),
    Column("parent_id", String(64), index=True),
    Column("originator_id", String(64), index=True),
    Column("workflow_id", String(64), index=True),
    Column("site", String(128), nullable=False, index=True),
    Column("native_id", Text),
    Column("state", String(16), index=True),
    Column("exit_code", Integer),
    Column("created", String(40), nullable=False, index=True),
    Column("started", String(40)),
    Column("ended", String(40)),
    Column("triggered_by", String(64)),
    Column("instance_id", String(64), nullable=False),
    Column("submitter", String(255)),  # who submitted it (the OS user of the submitting process)
    # The claim of the process that submitted it (lwfm.starter.new_claim), written with the
    # row: a job still PENDING without a native id whose claim is dead was never started.
    Column("launcher", String(255)),
)

statuses = Table(
    "statuses", metadata,
    Column("seq", _Seq, primary_key=True, autoincrement=True),
    Column("job_id", String(64), nullable=False, index=True),
    Column("state", String(16), nullable=False),
    Column("native_state", Text),
    Column("info", Text),
    Column("time", String(40), nullable=False),
    Column("exit_code", Integer),
)

data = Table(
    "data", metadata,
    Column("id", String(64), primary_key=True),
    Column("url", Text, nullable=False),
    Column("site", String(128), nullable=False),
    Column("direction", String(8), nullable=False),
    Column("metadata", JSON, nullable=False, default=dict),
    Column("size", BigInteger),
    Column("sha256", String(64), index=True),
    Column("media_type", String(255)),
    Column("job_id", String(64), index=True),
    Column("workflow_id", String(64), index=True),
    Column("derived_from", String(64), index=True),
    Column("time", String(40), nullable=False),
    Column("instance_id", String(64), nullable=False),
)

# One row per (data object, metadata key) so find() matches fields, not serialized text.
# A string value is stored as is (typed = false); any other value as canonical JSON
# (typed = true), so the string "3" and the number 3 stay different values.
data_meta = Table(
    "data_meta", metadata,
    Column("data_id", String(64), nullable=False, index=True),
    Column("key", String(255), nullable=False),
    Column("value", Text, nullable=False),
    Column("typed", Boolean, nullable=False, default=False),
    # sha256 of value: PostgreSQL's btree cannot index long texts (> ~2.7 KB) directly.
    Column("vhash", String(64), nullable=False, default=lambda ctx: value_hash(
        ctx.get_current_parameters()["value"])),
    Index("ix_data_meta_key_vhash", "key", "vhash"),
)

triggers = Table(
    "triggers", metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(8), nullable=False),
    Column("status", String(8), nullable=False, index=True),
    Column("body", JSON, nullable=False),   # Trigger.to_dict()
    Column("job_id", String(64), nullable=False, index=True),  # the job it starts
    Column("fired_by", String(64)),
    Column("reason", Text),
    Column("fired_at", String(40)),
    # Starting the fired job (its row is written in the same transaction that fires):
    # launch is NULL (not fired, or fired before this column), "waiting" (recorded, not
    # started), "starting" (its site was asked to start it) or "done"; launcher is the
    # claim of the process that will start it (host:pid:start:nonce), NULL when released.
    Column("launch", String(8), index=True),
    Column("launcher", String(255)),
)

# Which pending trigger waits on which job: lets a status find its triggers by index.
trigger_watch = Table(
    "trigger_watch", metadata,
    Column("trigger_id", String(64), nullable=False, index=True),
    Column("job_id", String(64), nullable=False, index=True),
)

logs = Table(
    "logs", metadata,
    Column("seq", _Seq, primary_key=True, autoincrement=True),
    Column("time", String(40), nullable=False),
    Column("level", String(16), nullable=False),
    Column("message", Text, nullable=False),
    Column("job_id", String(64), index=True),
    Column("workflow_id", String(64), index=True),
)

bundles = Table(
    "bundles", metadata,
    Column("id", String(64), primary_key=True),
    Column("origin_instance", String(64), nullable=False, index=True),
    Column("file_name", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("imported_at", String(40), nullable=False),
    Column("summary", JSON, nullable=False, default=dict),
)

# Which bundle brought which record (kind: workflow/job/data/trigger; a job's statuses
# come with it).
bundle_items = Table(
    "bundle_items", metadata,
    Column("bundle_id", String(64), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("ref", String(64), nullable=False),
)

# Every triple of an imported foreign RO-Crate (bundles/_triples.py), one row per subject
# of the crate: its triples as N-Triples lines (the crate's IRIs, relative ids resolved
# against arcp://uuid,<crate_id>/; literals as the crate wrote them). crate_id is the
# crate's origin (the instance id of its workflow, jobs and data rows); its named graph
# is urn:lwfm:graph:crate:<crate_id>.
crate_nodes = Table(
    "crate_nodes", metadata,
    Column("crate_id", String(64), nullable=False, index=True),
    Column("subject", Text, nullable=False),
    Column("triples", Text, nullable=False),
)

events = Table(
    "events", metadata,
    Column("seq", _Seq, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),   # workflow|job|status|data|trigger|bundle|crate
    Column("ref", String(64), nullable=False),    # id, or status seq as text
)
