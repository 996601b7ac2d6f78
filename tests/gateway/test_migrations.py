"""The migrations build exactly the schema the models describe."""

from __future__ import annotations

from typing import cast

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, MetaData

import gateway.models
from audit import AuditBase


def test_models_and_migrations_agree(engine: Engine) -> None:
    # Both metadata at once, as env.py's target_metadata: compare_metadata is annotated with one
    # MetaData, but hands it to AutogenContext, which takes `MetaData | Sequence[MetaData]`.
    both = cast(MetaData, [gateway.models.Base.metadata, AuditBase.metadata])
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, both)

    assert diff == []
