"""Baseline: the tables as lwfm created them before jobs.submitter (commit 0cf2501), all
recorded as schema version "1" (lwfm wrote that version but did not read it).

Running the scripts from nothing gives the same schema as a new store (which lwfm creates
from ``schema.py`` directly, at the head). A store that says "1" may already have later
columns or indexes: the scripts after this one check before they add.

Revision ID: 1
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "1"
down_revision = None
branch_labels = None
depends_on = None

_Seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _indexes(table: str, *cols: str) -> None:
    for col in cols:
        op.create_index(f"ix_{table}_{col}", table, [col])


def upgrade() -> None:
    op.create_table("lwfm_meta",
                    sa.Column("key", sa.String(64), primary_key=True),
                    sa.Column("value", sa.Text, nullable=False))
    op.create_table("workflows",
                    sa.Column("id", sa.String(64), primary_key=True),
                    sa.Column("name", sa.Text, nullable=False),
                    sa.Column("description", sa.Text, nullable=False),
                    sa.Column("props", sa.JSON, nullable=False),
                    sa.Column("created", sa.String(40), nullable=False),
                    sa.Column("instance_id", sa.String(64), nullable=False))
    op.create_table("jobs",
                    sa.Column("id", sa.String(64), primary_key=True),
                    sa.Column("name", sa.Text, nullable=False),
                    sa.Column("defn", sa.JSON, nullable=False),
                    sa.Column("parent_id", sa.String(64)),
                    sa.Column("originator_id", sa.String(64)),
                    sa.Column("workflow_id", sa.String(64)),
                    sa.Column("site", sa.String(128), nullable=False),
                    sa.Column("native_id", sa.Text),
                    sa.Column("state", sa.String(16)),
                    sa.Column("exit_code", sa.Integer),
                    sa.Column("created", sa.String(40), nullable=False),
                    sa.Column("started", sa.String(40)),
                    sa.Column("ended", sa.String(40)),
                    sa.Column("triggered_by", sa.String(64)),
                    sa.Column("instance_id", sa.String(64), nullable=False))
    _indexes("jobs", "parent_id", "originator_id", "workflow_id", "site", "state", "created")
    op.create_table("statuses",
                    sa.Column("seq", _Seq, primary_key=True, autoincrement=True),
                    sa.Column("job_id", sa.String(64), nullable=False),
                    sa.Column("state", sa.String(16), nullable=False),
                    sa.Column("native_state", sa.Text),
                    sa.Column("info", sa.Text),
                    sa.Column("time", sa.String(40), nullable=False),
                    sa.Column("exit_code", sa.Integer))
    _indexes("statuses", "job_id")
    op.create_table("data",
                    sa.Column("id", sa.String(64), primary_key=True),
                    sa.Column("url", sa.Text, nullable=False),
                    sa.Column("site", sa.String(128), nullable=False),
                    sa.Column("direction", sa.String(8), nullable=False),
                    sa.Column("metadata", sa.JSON, nullable=False),
                    sa.Column("size", sa.BigInteger),
                    sa.Column("sha256", sa.String(64)),
                    sa.Column("media_type", sa.String(255)),
                    sa.Column("job_id", sa.String(64)),
                    sa.Column("workflow_id", sa.String(64)),
                    sa.Column("derived_from", sa.String(64)),
                    sa.Column("time", sa.String(40), nullable=False),
                    sa.Column("instance_id", sa.String(64), nullable=False))
    _indexes("data", "sha256", "job_id", "workflow_id", "derived_from")
    op.create_table("data_meta",
                    sa.Column("data_id", sa.String(64), nullable=False),
                    sa.Column("key", sa.String(255), nullable=False),
                    sa.Column("value", sa.Text, nullable=False),
                    sa.Column("typed", sa.Boolean, nullable=False),
                    sa.Column("vhash", sa.String(64), nullable=False))
    _indexes("data_meta", "data_id")
    op.create_index("ix_data_meta_key_vhash", "data_meta", ["key", "vhash"])
    op.create_table("triggers",
                    sa.Column("id", sa.String(64), primary_key=True),
                    sa.Column("kind", sa.String(8), nullable=False),
                    sa.Column("status", sa.String(8), nullable=False),
                    sa.Column("body", sa.JSON, nullable=False),
                    sa.Column("job_id", sa.String(64), nullable=False),
                    sa.Column("fired_by", sa.String(64)),
                    sa.Column("reason", sa.Text),
                    sa.Column("fired_at", sa.String(40)))
    _indexes("triggers", "status")
    op.create_table("trigger_watch",
                    sa.Column("trigger_id", sa.String(64), nullable=False),
                    sa.Column("job_id", sa.String(64), nullable=False))
    _indexes("trigger_watch", "trigger_id", "job_id")
    op.create_table("logs",
                    sa.Column("seq", _Seq, primary_key=True, autoincrement=True),
                    sa.Column("time", sa.String(40), nullable=False),
                    sa.Column("level", sa.String(16), nullable=False),
                    sa.Column("message", sa.Text, nullable=False),
                    sa.Column("job_id", sa.String(64)),
                    sa.Column("workflow_id", sa.String(64)))
    _indexes("logs", "job_id", "workflow_id")
    op.create_table("bundles",
                    sa.Column("id", sa.String(64), primary_key=True),
                    sa.Column("origin_instance", sa.String(64), nullable=False),
                    sa.Column("file_name", sa.Text, nullable=False),
                    sa.Column("sha256", sa.String(64), nullable=False),
                    sa.Column("imported_at", sa.String(40), nullable=False),
                    sa.Column("summary", sa.JSON, nullable=False))
    _indexes("bundles", "origin_instance")
    op.create_table("bundle_items",
                    sa.Column("bundle_id", sa.String(64), nullable=False),
                    sa.Column("kind", sa.String(16), nullable=False),
                    sa.Column("ref", sa.String(64), nullable=False))
    _indexes("bundle_items", "bundle_id")
    op.create_table("events",
                    sa.Column("seq", _Seq, primary_key=True, autoincrement=True),
                    sa.Column("kind", sa.String(16), nullable=False),
                    sa.Column("ref", sa.String(64), nullable=False))


def downgrade() -> None:
    for table in ("events", "bundle_items", "bundles", "logs", "trigger_watch", "triggers",
                  "data_meta", "data", "statuses", "jobs", "workflows", "lwfm_meta"):
        op.drop_table(table)
