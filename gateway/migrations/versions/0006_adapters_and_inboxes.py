"""police and education adapters: contacts and details on items, school placements, inboxes

- `item.contact`: whom to ask about a record (an officer or unit), named when it is withheld.
- `item.sealed_detail`: the people, locations and grading a record involves, sealed.
- `school_contact`: staff registered for a school"s URN (its DSL), or the LA"s education
  safeguarding lead: who receives Operation Encompass notices.
- `school_placement`: where an education record says its child is educated (keyed by item).
- `inbox_entry`: Encompass notices (with deadlines), notifications for lead practitioners, and
  escalations of notices not acknowledged in time.
- `team_webhook`, `webhook_delivery`: a team's outbound webhook and its outbox.
- `ix_item_client_id`, `ix_identity_client_id` dropped: the unique (client, record, version)
  index leads with the client, and the planner, without statistics on a fast-growing table,
  preferred the narrower index and scanned all of a client's rows for each chunk of a push.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table("school_contact",
    sa.Column("urn", sa.String(length=6), nullable=True),
    sa.Column("subject", sa.String(length=255), nullable=False),
    sa.Column("display_name", sa.String(length=200), nullable=False),
    sa.Column("role", sa.Enum("designated_safeguarding_lead", "deputy_designated_safeguarding_lead", "la_education_safeguarding_lead", name="schoolcontactrole", native_enum=False, length=64), nullable=False),
    sa.Column("active", sa.Boolean(), nullable=False),
    sa.Column("id", sa.Uuid(), nullable=False),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_school_contact")),
    sa.UniqueConstraint("urn", "subject", name=op.f("uq_school_contact_urn_subject"))
    )
    with op.batch_alter_table("school_contact", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_school_contact_subject"), ["subject"], unique=False)
        batch_op.create_index(batch_op.f("ix_school_contact_urn"), ["urn"], unique=False)

    op.create_table("inbox_entry",
    sa.Column("kind", sa.Enum("encompass", "notification", "encompass_overdue", name="inboxkind", native_enum=False, length=32), nullable=False),
    sa.Column("recipient", sa.String(length=255), nullable=False),
    sa.Column("recipient_role", sa.String(length=64), nullable=False),
    sa.Column("item_id", sa.Uuid(), nullable=False),
    sa.Column("child_id", sa.Uuid(), nullable=False),
    sa.Column("agency", sa.Enum("health", "police", "education", "social_care", name="agency", native_enum=False, length=32), nullable=False),
    sa.Column("record_kind", sa.Enum("identity", "encounter", "incident", "domestic_abuse_notification", "missing_episode", "custody", "intelligence", "enrolment", "attendance", "exclusion", "safeguarding_concern", "education_notice", name="recordkind", native_enum=False, length=64), nullable=False),
    sa.Column("category", sa.String(length=64), nullable=False),
    sa.Column("urn", sa.String(length=6), nullable=True),
    sa.Column("case_id", sa.Uuid(), nullable=True),
    sa.Column("about_entry_id", sa.Uuid(), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("deadline", sa.DateTime(timezone=True), nullable=True),
    sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("acknowledged_by", sa.String(length=255), nullable=True),
    sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("sealed_notice", sa.LargeBinary(), nullable=True),
    sa.Column("id", sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(["about_entry_id"], ["inbox_entry.id"], name=op.f("fk_inbox_entry_about_entry_id_inbox_entry")),
    sa.ForeignKeyConstraint(["child_id"], ["child.id"], name=op.f("fk_inbox_entry_child_id_child")),
    sa.ForeignKeyConstraint(["case_id"], ["case.id"], name=op.f("fk_inbox_entry_case_id_case")),
    sa.ForeignKeyConstraint(["item_id"], ["item.id"], name=op.f("fk_inbox_entry_item_id_item")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_inbox_entry"))
    )
    with op.batch_alter_table("inbox_entry", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_inbox_entry_item_id"), ["item_id"], unique=False)
        batch_op.create_index("ix_inbox_entry_kind_deadline", ["kind", "deadline"], unique=False)
        batch_op.create_index("ix_inbox_entry_recipient_kind_created", ["recipient", "kind", "created_at"], unique=False)

    op.create_table("school_placement",
    sa.Column("item_id", sa.Uuid(), nullable=False),
    sa.Column("urn", sa.String(length=6), nullable=True),
    sa.Column("status", sa.String(length=32), nullable=False),
    sa.Column("since", sa.Date(), nullable=True),
    sa.ForeignKeyConstraint(["item_id"], ["item.id"], name=op.f("fk_school_placement_item_id_item")),
    sa.PrimaryKeyConstraint("item_id", name=op.f("pk_school_placement"))
    )
    op.create_table("team_webhook",
    sa.Column("team_id", sa.Uuid(), nullable=False),
    sa.Column("url", sa.String(length=2000), nullable=False),
    sa.Column("wrapped_secret", sa.LargeBinary(), nullable=False),
    sa.Column("active", sa.Boolean(), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("id", sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(["team_id"], ["team.id"], name=op.f("fk_team_webhook_team_id_team")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_team_webhook")),
    sa.UniqueConstraint("team_id", name=op.f("uq_team_webhook_team_id"))
    )
    op.create_table("webhook_delivery",
    sa.Column("webhook_id", sa.Uuid(), nullable=False),
    sa.Column("entry_id", sa.Uuid(), nullable=False),
    sa.Column("payload", sa.JSON(), nullable=False),
    sa.Column("status", sa.Enum("pending", "delivered", "failed", name="deliverystatus", native_enum=False, length=16), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_status", sa.Integer(), nullable=True),
    sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("id", sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(["entry_id"], ["inbox_entry.id"], name=op.f("fk_webhook_delivery_entry_id_inbox_entry")),
    sa.ForeignKeyConstraint(["webhook_id"], ["team_webhook.id"], name=op.f("fk_webhook_delivery_webhook_id_team_webhook")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_delivery"))
    )
    with op.batch_alter_table("webhook_delivery", schema=None) as batch_op:
        batch_op.create_index("ix_webhook_delivery_status_next", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_webhook_delivery_webhook_id"), ["webhook_id"], unique=False)
    with op.batch_alter_table("item", schema=None) as batch_op:
        batch_op.add_column(sa.Column("contact", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("sealed_detail", sa.LargeBinary(), nullable=True))
        # The unique (client_id, source_record_id, source_version) index leads with client_id.
        batch_op.drop_index(batch_op.f("ix_item_client_id"))
    with op.batch_alter_table("identity", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_identity_client_id"))



def downgrade() -> None:
    with op.batch_alter_table("webhook_delivery", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_delivery_webhook_id"))
        batch_op.drop_index("ix_webhook_delivery_status_next")
    op.drop_table("webhook_delivery")
    op.drop_table("team_webhook")
    with op.batch_alter_table("identity", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_identity_client_id"), ["client_id"], unique=False)
    with op.batch_alter_table("item", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_item_client_id"), ["client_id"], unique=False)
        batch_op.drop_column("sealed_detail")
        batch_op.drop_column("contact")

    op.drop_table("school_placement")
    with op.batch_alter_table("inbox_entry", schema=None) as batch_op:
        batch_op.drop_index("ix_inbox_entry_recipient_kind_created")
        batch_op.drop_index("ix_inbox_entry_kind_deadline")
        batch_op.drop_index(batch_op.f("ix_inbox_entry_item_id"))

    op.drop_table("inbox_entry")
    with op.batch_alter_table("school_contact", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_school_contact_urn"))
        batch_op.drop_index(batch_op.f("ix_school_contact_subject"))

    op.drop_table("school_contact")
