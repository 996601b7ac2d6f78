"""seal an item's summary on its own, so that the view decrypts only what it shows

`item.sealed_summary` holds the summary line sealed under the child's data key, bound to its
own context (`item:<id>/summary`) so that it cannot be swapped with `sealed_content`. The view reads and unseals this short value only; the
source's payload in `sealed_content` is unsealed only when it is needed. Rows stored before this
revision have no sealed summary: the view falls back to their sealed content.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("item") as batch_op:
        batch_op.add_column(sa.Column("sealed_summary", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("item") as batch_op:
        batch_op.drop_column("sealed_summary")
