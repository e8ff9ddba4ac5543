"""Alembic's environment for lwfm's store.

lwfm runs the scripts itself, on open, inside its own write transaction: the connection
comes in ``config.attributes["connection"]``. A developer writing a new script may instead
give ``sqlalchemy.url`` (``alembic -c <ini> revision --autogenerate``) to compare a database
made by the scripts against ``lwfm.store.schema``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from lwfm.store import schema

config = context.config
conn = config.attributes.get("connection")
if conn is not None:
    context.configure(connection=conn, target_metadata=schema.metadata)
    with context.begin_transaction():  # joins lwfm's open transaction
        context.run_migrations()
else:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("lwfm upgrades its store itself when it opens it; to run these "
                         "scripts by hand, set sqlalchemy.url in the Alembic config")
    with create_engine(url).connect() as c:
        context.configure(connection=c, target_metadata=schema.metadata)
        with context.begin_transaction():
            context.run_migrations()
