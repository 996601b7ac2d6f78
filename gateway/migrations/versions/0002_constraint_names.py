"""name unique constraints after all their columns; drop the unused police_grading column

The naming convention now names a unique constraint after every column it covers
(`%(column_0_N_name)s`), so that two constraints starting with the same column cannot collide.
`item.police_grading` was never written or read; the police adapter will add the 3x5x2 grading
in the shape it needs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, old name, new name, columns)
RENAMES = [
    ("identity", "uq_identity_client_id", "uq_identity_client_id_source_record_id_source_version",
     ["client_id", "source_record_id", "source_version"]),
    ("item", "uq_item_client_id", "uq_item_client_id_source_record_id_source_version",
     ["client_id", "source_record_id", "source_version"]),
    ("team_member", "uq_team_member_team_id", "uq_team_member_team_id_subject", ["team_id", "subject"]),
]


def _rename(old_index: int, new_index: int) -> None:
    for table, *names, columns in RENAMES:
        old, new = names[old_index], names[new_index]
        if op.get_bind().dialect.name == "postgresql":
            op.execute(f'ALTER TABLE "{table}" RENAME CONSTRAINT "{old}" TO "{new}"')
        else:
            # SQLite cannot rename a constraint: batch mode rebuilds the table with the new name.
            with op.batch_alter_table(table) as batch_op:
                batch_op.drop_constraint(old, type_="unique")
                batch_op.create_unique_constraint(new, columns)


def upgrade() -> None:
    _rename(0, 1)
    with op.batch_alter_table("item") as batch_op:
        batch_op.drop_column("police_grading")


def downgrade() -> None:
    with op.batch_alter_table("item") as batch_op:
        batch_op.add_column(sa.Column("police_grading", sa.String(length=8), nullable=True))
    _rename(1, 0)
