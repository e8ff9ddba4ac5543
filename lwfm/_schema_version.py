"""The store's schema version, apart from the store so the CLI's light read path
(``lwfm.cli._lite``) can check it without importing SQLAlchemy. It is the Alembic head:
the revision of the last script in ``lwfm/store/migrations/versions``."""

SCHEMA_VERSION = "6"
