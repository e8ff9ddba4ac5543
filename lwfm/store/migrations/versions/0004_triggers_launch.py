"""triggers.launch and triggers.launcher: the claim on starting a fired job, whose row is
now written in the transaction that fires the trigger (so a crash between firing and
starting is recovered by the next process, never lost). NULL on older rows: nothing to start.

Revision ID: 4
Revises: 3
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "4"
down_revision = "3"
branch_labels = None
depends_on = None

INDEX = "ix_triggers_launch"


def upgrade() -> None:
    # As 2 and 3: a store may say an older version yet have these (made by a newer
    # lwfm's tables, then stamped back): add only what is missing.
    insp = sa.inspect(op.get_bind())
    have = {c["name"] for c in insp.get_columns("triggers")}
    if "launch" not in have:
        op.add_column("triggers", sa.Column("launch", sa.String(8), nullable=True))
    if "launcher" not in have:
        op.add_column("triggers", sa.Column("launcher", sa.String(255), nullable=True))
    if INDEX not in {i["name"] for i in insp.get_indexes("triggers")}:
        op.create_index(INDEX, "triggers", ["launch"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="triggers")
    with op.batch_alter_table("triggers") as b:
        b.drop_column("launcher")
        b.drop_column("launch")
