"""The migrations build exactly the schema the models describe."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import cast

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, MetaData, inspect, text

import gateway.models
from audit import AuditBase
from gateway.kit.db import build_engine
from gateway.kit.migrate import current_revision, head_revision, upgrade
from tests.serving import scratch_database


def test_models_and_migrations_agree(engine: Engine) -> None:
    # Both metadata at once, as env.py's target_metadata: compare_metadata is annotated with one
    # MetaData, but hands it to AutogenContext, which takes `MetaData | Sequence[MetaData]`.
    both = cast(MetaData, [gateway.models.Base.metadata, AuditBase.metadata])
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, both)

    assert diff == []


def test_0002_keeps_the_rows_of_a_database_made_at_0001(database_url: str, tmp_path: Path) -> None:
    with scratch_database(database_url, tmp_path, prefix="gw_mig") as url:
        engine = build_engine(url)
        try:
            upgrade(engine, "0001")
            with engine.begin() as connection:
                connection.execute(
                    text(
                        "INSERT INTO client (id, name, agency, jwks, allowed_kinds, active, created_at) "
                        "VALUES ('c1', 'Trust EPR', 'health', '{}', '[]', true, :now)"
                    ),
                    {"now": datetime.now(UTC)},
                )
            upgrade(engine)
            with engine.connect() as connection:
                assert current_revision(connection) == head_revision()
                assert connection.execute(text("SELECT id, name FROM client")).all() == [("c1", "Trust EPR")]
                unique = {uc["name"] for uc in inspect(connection).get_unique_constraints("item")}
                columns = {column["name"] for column in inspect(connection).get_columns("item")}
            assert unique == {"uq_item_client_id_source_record_id_source_version"}
            assert "police_grading" not in columns
        finally:
            engine.dispose()
