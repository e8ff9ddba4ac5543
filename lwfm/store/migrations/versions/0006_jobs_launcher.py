"""jobs.launcher: the claim of the process that submitted a job, written with its row, so
a job recorded but never started (its submitter killed, or interrupted, while its site
started it) is found and ended by the next process instead of staying PENDING for ever.
NULL on older rows: nothing to recover.

Revision ID: 6
Revises: 5
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "6"
down_revision = "5"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # As 2-5: a store may say an older version yet have the column (made by a newer
    # lwfm's tables, then stamped back): add it only if it is missing.
    if "launcher" not in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("jobs")}:
        op.add_column("jobs", sa.Column("launcher", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as b:
        b.drop_column("launcher")
