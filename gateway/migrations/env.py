"""Alembic environment: one metadata for the gateway's tables and one for the audit log."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

import gateway.models
from audit import AuditBase

target_metadata = [gateway.models.Base.metadata, AuditBase.metadata]
config = context.config


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise SystemExit("no database URL: run migrations through `gateway db upgrade`")
    engine = create_engine(url)
    with engine.begin() as conn:
        _run(conn)


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run `gateway db upgrade`")
run_migrations_online()
