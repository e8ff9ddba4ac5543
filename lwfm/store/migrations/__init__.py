"""Alembic scripts that upgrade an older store (see ``lwfm.store._migrate``); run by lwfm on open."""
