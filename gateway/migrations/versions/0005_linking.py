"""identity linking beyond the NHS number: UPNs, scored matching, the review queue, merge and unmerge

- `child.merged_into_id`: set while a child's records are merged into another.
- `identity.upn_index`: the blind index of a claim's UPN, beside its NHS number's.
- `link`: the proposed link of the review queue (candidate identity, reasons), its creation time,
  and a partial index for the queue (child, proposed links only).
- `identity_block`: keyed hashes of each identity's blocking keys (scored linking's candidates).
- `child_merge`: what each merge or correction moved, so that unmerge moves it back.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("child", schema=None) as batch_op:
        batch_op.add_column(sa.Column("merged_into_id", sa.Uuid(), nullable=True))
        batch_op.create_foreign_key(batch_op.f("fk_child_merged_into_id_child"), "child", ["merged_into_id"], ["id"])
    with op.batch_alter_table("identity", schema=None) as batch_op:
        batch_op.add_column(sa.Column("upn_index", sa.String(length=64), nullable=True))
    with op.batch_alter_table("link", schema=None) as batch_op:
        batch_op.add_column(sa.Column("candidate_identity_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("reasons", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("note", sa.Text(), nullable=True))
        # Rows linked before this revision were created when they were decided.
        batch_op.add_column(sa.Column("created_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_link_candidate_identity_id_identity"), "identity", ["candidate_identity_id"], ["id"]
        )
        batch_op.create_index(
            "ix_link_review_child_id",
            ["child_id"],
            unique=False,
            postgresql_where=sa.text("state = 'review'"),
            sqlite_where=sa.text("state = 'review'"),
        )
    op.execute("UPDATE link SET created_at = decided_at")
    with op.batch_alter_table("link", schema=None) as batch_op:
        batch_op.alter_column("created_at", existing_type=sa.DateTime(timezone=True), nullable=False)
    op.create_table(
        "identity_block",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("identity_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["identity_id"], ["identity.id"], name=op.f("fk_identity_block_identity_id_identity")),
        sa.PrimaryKeyConstraint("key", "identity_id", name=op.f("pk_identity_block")),
    )
    op.create_table(
        "child_merge",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("child_id", sa.Uuid(), nullable=False),
        sa.Column("into_child_id", sa.Uuid(), nullable=False),
        sa.Column("link_id", sa.Uuid(), nullable=True),
        sa.Column("source_records", sa.JSON(), nullable=False),
        sa.Column("identifiers", sa.JSON(), nullable=False),
        sa.Column("consent_ids", sa.JSON(), nullable=False),
        sa.Column("override_ids", sa.JSON(), nullable=False),
        sa.Column("settled_link_ids", sa.JSON(), nullable=False),
        sa.Column("retargeted_link_ids", sa.JSON(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("merged_by", sa.String(length=255), nullable=False),
        sa.Column("merged_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("unmerged_by", sa.String(length=255), nullable=True),
        sa.Column("unmerged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("unmerge_reason", sa.String(length=500), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["child_id"], ["child.id"], name=op.f("fk_child_merge_child_id_child")),
        sa.ForeignKeyConstraint(["into_child_id"], ["child.id"], name=op.f("fk_child_merge_into_child_id_child")),
        sa.ForeignKeyConstraint(["link_id"], ["link.id"], name=op.f("fk_child_merge_link_id_link")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_child_merge")),
    )
    with op.batch_alter_table("child_merge", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_child_merge_child_id"), ["child_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_child_merge_into_child_id"), ["into_child_id"], unique=False)


def downgrade() -> None:
    op.drop_table("child_merge")
    op.drop_table("identity_block")
    with op.batch_alter_table("link", schema=None) as batch_op:
        batch_op.drop_index("ix_link_review_child_id")
        batch_op.drop_constraint(batch_op.f("fk_link_candidate_identity_id_identity"), type_="foreignkey")
        batch_op.drop_column("created_at")
        batch_op.drop_column("note")
        batch_op.drop_column("reasons")
        batch_op.drop_column("candidate_identity_id")
    with op.batch_alter_table("identity", schema=None) as batch_op:
        batch_op.drop_column("upn_index")
    with op.batch_alter_table("child", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_child_merged_into_id_child"), type_="foreignkey")
        batch_op.drop_column("merged_into_id")
