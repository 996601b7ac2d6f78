"""other agencies' queries: the lead practitioner's queue of referred $person-info-query queries

- `person_query_referral`: new. A query the ISA sends for review, matched to a child with an
  open case, waits here (one row per open case) for the allocated team's lead practitioner. No
  personal data in clear: the child it matched, the reason (a legislation URI), who asked, and
  when; the lead practitioner's decision, who made it and when, and its note sealed under the
  child's data key.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table("person_query_referral",
    sa.Column("query_id", sa.Uuid(), nullable=False),
    sa.Column("client_id", sa.String(length=128), nullable=False),
    sa.Column("agency", sa.Enum("health", "police", "education", "social_care", name="agency", native_enum=False, length=32), nullable=False),
    sa.Column("reason", sa.String(length=512), nullable=False),
    sa.Column("child_id", sa.Uuid(), nullable=False),
    sa.Column("case_id", sa.Uuid(), nullable=False),
    sa.Column("team_id", sa.Uuid(), nullable=False),
    sa.Column("status", sa.Enum("pending", "contact_shared", "declined", name="referralstatus", native_enum=False, length=16), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("decided_by", sa.String(length=255), nullable=True),
    sa.Column("sealed_note", sa.LargeBinary(), nullable=True),
    sa.Column("id", sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(["case_id"], ["case.id"], name=op.f("fk_person_query_referral_case_id_case")),
    sa.ForeignKeyConstraint(["child_id"], ["child.id"], name=op.f("fk_person_query_referral_child_id_child")),
    sa.ForeignKeyConstraint(["client_id"], ["client.id"], name=op.f("fk_person_query_referral_client_id_client")),
    sa.ForeignKeyConstraint(["team_id"], ["team.id"], name=op.f("fk_person_query_referral_team_id_team")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_person_query_referral"))
    )
    with op.batch_alter_table("person_query_referral", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_person_query_referral_query_id"), ["query_id"], unique=False)
        batch_op.create_index("ix_person_query_referral_team_status", ["team_id", "status", "created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("person_query_referral", schema=None) as batch_op:
        batch_op.drop_index("ix_person_query_referral_team_status")
        batch_op.drop_index(batch_op.f("ix_person_query_referral_query_id"))

    op.drop_table("person_query_referral")
