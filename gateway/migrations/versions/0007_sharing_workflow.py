"""the sharing workflow: teams and cases managed, consent registry, break-glass, requests, policy versions

- `team.active`, `team.created_at`; `team_member.added_at`, `deactivated_at`: a partnership
  administrator manages teams and members (deactivated, never deleted).
- `case`: who opened and closed it, and the view"s key facts (child protection plan, looked after).
- `consent`: the giver"s relationship, a sealed note, and the source of a FHIR Consent pushed by
  a health system (idempotent on client, record id and version).
- `override.purpose`: the purpose an override applies to (existing rows: family help, the only
  purpose in which consent stops sharing).
- `break_glass`, `see_request`, `policy_version`: new.

Added NOT NULL columns get a server default for the rows already there.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table("policy_version",
    sa.Column("sha256", sa.String(length=64), nullable=False),
    sa.Column("policy_id", sa.String(length=200), nullable=False),
    sa.Column("version", sa.String(length=64), nullable=False),
    sa.Column("text", sa.Text(), nullable=False),
    sa.Column("first_loaded_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("id", sa.Uuid(), nullable=False),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_policy_version")),
    sa.UniqueConstraint("sha256", name=op.f("uq_policy_version_sha256"))
    )
    op.create_table("break_glass",
    sa.Column("child_id", sa.Uuid(), nullable=False),
    sa.Column("subject", sa.String(length=255), nullable=False),
    sa.Column("agency", sa.Enum("health", "police", "education", "social_care", name="agency", native_enum=False, length=32), nullable=False),
    sa.Column("role", sa.String(length=64), nullable=False),
    sa.Column("purpose", sa.Enum("child_protection", "family_help", name="purpose", native_enum=False, length=32), nullable=False),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("id", sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(["child_id"], ["child.id"], name=op.f("fk_break_glass_child_id_child")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_break_glass"))
    )
    with op.batch_alter_table("break_glass", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_break_glass_child_id"), ["child_id"], unique=False)
        batch_op.create_index("ix_break_glass_subject_child", ["subject", "child_id"], unique=False)

    op.create_table("see_request",
    sa.Column("child_id", sa.Uuid(), nullable=False),
    sa.Column("item_id", sa.Uuid(), nullable=False),
    sa.Column("team_id", sa.Uuid(), nullable=False),
    sa.Column("requester", sa.String(length=255), nullable=False),
    sa.Column("requester_agency", sa.Enum("health", "police", "education", "social_care", name="agency", native_enum=False, length=32), nullable=False),
    sa.Column("requester_role", sa.String(length=64), nullable=False),
    sa.Column("purpose", sa.Enum("child_protection", "family_help", name="purpose", native_enum=False, length=32), nullable=False),
    sa.Column("justification", sa.Text(), nullable=False),
    sa.Column("withheld_by", sa.String(length=100), nullable=False),
    sa.Column("status", sa.Enum("pending", "approved", "declined", name="requeststatus", native_enum=False, length=16), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("decided_by", sa.String(length=255), nullable=True),
    sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("decision_note", sa.Text(), nullable=True),
    sa.Column("id", sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(["child_id"], ["child.id"], name=op.f("fk_see_request_child_id_child")),
    sa.ForeignKeyConstraint(["item_id"], ["item.id"], name=op.f("fk_see_request_item_id_item")),
    sa.ForeignKeyConstraint(["team_id"], ["team.id"], name=op.f("fk_see_request_team_id_team")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_see_request"))
    )
    with op.batch_alter_table("see_request", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_see_request_child_id"), ["child_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_see_request_item_id"), ["item_id"], unique=False)
        batch_op.create_index("ix_see_request_requester_child", ["requester", "child_id"], unique=False)
        batch_op.create_index("ix_see_request_team_status", ["team_id", "status"], unique=False)

    with op.batch_alter_table("case", schema=None) as batch_op:
        batch_op.add_column(sa.Column("opened_by", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("closed_by", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("close_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("cp_plan_start", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("cp_plan_category", sa.Enum("neglect", "physical_abuse", "sexual_abuse", "emotional_abuse", "multiple", name="plancategory", native_enum=False, length=32), nullable=True))
        batch_op.add_column(sa.Column("cp_plan_end", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("looked_after", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("looked_after_since", sa.Date(), nullable=True))

    with op.batch_alter_table("consent", schema=None) as batch_op:
        batch_op.add_column(sa.Column("giver_relationship", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("sealed_note", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("client_id", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("source_record_id", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("source_version", sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_consent_client_id_source_record_id_source_version"), ["client_id", "source_record_id", "source_version"])

    with op.batch_alter_table("override", schema=None) as batch_op:
        batch_op.add_column(sa.Column("purpose", sa.Enum("child_protection", "family_help", name="purpose", native_enum=False, length=32), nullable=False, server_default="family_help"))

    with op.batch_alter_table("team", schema=None) as batch_op:
        batch_op.add_column(sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch_op.add_column(sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.current_timestamp()))

    with op.batch_alter_table("team_member", schema=None) as batch_op:
        batch_op.add_column(sa.Column("added_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.current_timestamp()))
        batch_op.add_column(sa.Column("deactivated_at", sa.DateTime(timezone=True), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table("team_member", schema=None) as batch_op:
        batch_op.drop_column("deactivated_at")
        batch_op.drop_column("added_at")

    with op.batch_alter_table("team", schema=None) as batch_op:
        batch_op.drop_column("created_at")
        batch_op.drop_column("active")

    with op.batch_alter_table("override", schema=None) as batch_op:
        batch_op.drop_column("purpose")

    with op.batch_alter_table("consent", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_consent_client_id_source_record_id_source_version"), type_="unique")
        batch_op.drop_column("source_version")
        batch_op.drop_column("source_record_id")
        batch_op.drop_column("client_id")
        batch_op.drop_column("sealed_note")
        batch_op.drop_column("giver_relationship")

    with op.batch_alter_table("case", schema=None) as batch_op:
        batch_op.drop_column("looked_after_since")
        batch_op.drop_column("looked_after")
        batch_op.drop_column("cp_plan_end")
        batch_op.drop_column("cp_plan_category")
        batch_op.drop_column("cp_plan_start")
        batch_op.drop_column("close_reason")
        batch_op.drop_column("closed_by")
        batch_op.drop_column("opened_by")

    with op.batch_alter_table("see_request", schema=None) as batch_op:
        batch_op.drop_index("ix_see_request_team_status")
        batch_op.drop_index("ix_see_request_requester_child")
        batch_op.drop_index(batch_op.f("ix_see_request_item_id"))
        batch_op.drop_index(batch_op.f("ix_see_request_child_id"))

    op.drop_table("see_request")
    with op.batch_alter_table("break_glass", schema=None) as batch_op:
        batch_op.drop_index("ix_break_glass_subject_child")
        batch_op.drop_index(batch_op.f("ix_break_glass_child_id"))

    op.drop_table("break_glass")
    op.drop_table("policy_version")
