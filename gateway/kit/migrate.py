"""Alembic, configured in code: migrations ship inside the package, no alembic.ini needed."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(database_url: str, *, connection: Connection | None = None) -> Config:
    """Build the Alembic configuration for a database."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser would read "%" as interpolation; a password may contain one.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to a revision (head by default)."""
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # SQLite changes a table by rebuilding it (Alembic's batch mode), which must not
            # cascade or fail on foreign keys midway; the keys are checked once it is done.
            # The pragma only takes effect outside a transaction, hence on the driver's connection
            # (which SQLAlchemy would otherwise wrap in one) before begin().
            _sqlite_foreign_keys(connection, on=False)
        with connection.begin():
            command.upgrade(alembic_config(str(engine.url), connection=connection), revision)
            if sqlite and connection.exec_driver_sql("PRAGMA foreign_key_check").first() is not None:
                raise RuntimeError("the migration left rows whose foreign keys point nowhere; rolled back")
        if sqlite:
            _sqlite_foreign_keys(connection, on=True)


def _sqlite_foreign_keys(connection: Connection, *, on: bool) -> None:
    driver_connection = connection.connection.driver_connection
    assert driver_connection is not None
    driver_connection.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")


def head_revision() -> str | None:
    """Return the newest migration this code ships."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(connection: Connection) -> str | None:
    """Return the revision the database is at."""
    return MigrationContext.configure(connection).get_current_revision()
