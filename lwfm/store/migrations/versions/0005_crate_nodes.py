"""crate_nodes: every triple of an imported foreign RO-Crate, kept as rows (one per
subject: its triples as N-Triples lines), so reindex rebuilds the crate's named graph
and an export carries it. Older stores had none: the table starts empty.

Revision ID: 5
Revises: 4
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "5"
down_revision = "4"
branch_labels = None
depends_on = None

TABLE = "crate_nodes"
INDEX = "ix_crate_nodes_crate_id"


def upgrade() -> None:
    # As 2-4: a store may say an older version yet have the table (made by a newer
    # lwfm's tables, then stamped back): create only what is missing.
    insp = sa.inspect(op.get_bind())
    if not insp.has_table(TABLE):
        op.create_table(TABLE,
                        sa.Column("crate_id", sa.String(64), nullable=False),
                        sa.Column("subject", sa.Text, nullable=False),
                        sa.Column("triples", sa.Text, nullable=False))
    if INDEX not in {i["name"] for i in sa.inspect(op.get_bind()).get_indexes(TABLE)}:
        op.create_index(INDEX, TABLE, ["crate_id"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name=TABLE)
    op.drop_table(TABLE)
