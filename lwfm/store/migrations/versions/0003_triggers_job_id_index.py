"""An index on triggers.job_id: a trigger's future job is looked up by it (status, wait,
id prefixes). New stores had it, older ones not: create it only where it is missing.

Revision ID: 3
Revises: 2
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "3"
down_revision = "2"
branch_labels = None
depends_on = None

INDEX = "ix_triggers_job_id"


def upgrade() -> None:
    if INDEX not in {i["name"] for i in sa.inspect(op.get_bind()).get_indexes("triggers")}:
        op.create_index(INDEX, "triggers", ["job_id"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="triggers")
