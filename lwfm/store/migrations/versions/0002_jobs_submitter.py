"""jobs.submitter: who submitted each job (the OS user of the submitting process).

It came without a migration, so a store that says "1" may have it already: add it only
where it is missing. Old jobs keep submitter NULL (not known).

Revision ID: 2
Revises: 1
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "2"
down_revision = "1"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if "submitter" not in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("jobs")}:
        op.add_column("jobs", sa.Column("submitter", sa.String(255)))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as b:
        b.drop_column("submitter")
