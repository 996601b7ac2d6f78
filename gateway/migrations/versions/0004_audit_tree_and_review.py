"""the audit trail's Merkle tree (stored perfect subtrees), signed checkpoints, and the IG review queue

- `audit_node`: every complete perfect subtree of the RFC 9162 tree over the events (level 1 and
  up), so that appends and proofs read O(log n) rows; filled here for the events already stored.
- `audit_checkpoint`: signed checkpoints (C2SP signed notes), one per tree size.
- Both are append-only in the database, as `audit_event` is.
- `audit_pending`: events kept by a request's transaction for the integrator to append
  (`audit.stage`, `audit.integrate`); the database refuses to change one, only to delete it.
- `review_entry`: the IG review queue.
- Indexes for the IG officer's filters: trace id, and actor by time.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from audit.tree import CompactRange

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_APPEND_ONLY = ("audit_node", "audit_checkpoint")


def upgrade() -> None:
    op.create_table(
        "audit_node",
        sa.Column("level", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("position", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("level", "position", name=op.f("pk_audit_node")),
    )
    op.create_table(
        "audit_checkpoint",
        sa.Column("tree_size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("root_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tree_size", name=op.f("pk_audit_checkpoint")),
    )
    op.create_table(
        "audit_pending",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_type", sa.String(length=16), nullable=False),
        sa.Column("actor_id", sa.String(length=255), nullable=False),
        sa.Column("actor_agency", sa.String(length=32), nullable=True),
        sa.Column("actor_role", sa.String(length=64), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("child_id", sa.Uuid(), nullable=True),
        sa.Column("purpose", sa.String(length=32), nullable=True),
        sa.Column("lawful_basis", sa.String(length=255), nullable=True),
        sa.Column("policy_version", sa.String(length=128), nullable=True),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("trace_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_pending")),
    )
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.create_index("ix_audit_event_trace_id", ["trace_id"], unique=False)
        batch_op.create_index("ix_audit_event_actor_id_occurred_at", ["actor_id", "occurred_at"], unique=False)
    op.create_table(
        "review_entry",
        sa.Column("dedupe_key", sa.String(length=255), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("actor_id", sa.String(length=255), nullable=False),
        sa.Column("actor_agency", sa.String(length=32), nullable=True),
        sa.Column("actor_role", sa.String(length=64), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("child_id", sa.Uuid(), nullable=True),
        sa.Column("flagged_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reviewed_by", sa.String(length=255), nullable=True),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_entry")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_review_entry_dedupe_key")),
    )
    with op.batch_alter_table("review_entry", schema=None) as batch_op:
        batch_op.create_index("ix_review_entry_child_id", ["child_id"], unique=False)
        batch_op.create_index("ix_review_entry_seq", ["seq"], unique=False)
        batch_op.create_index("ix_review_entry_status_flagged", ["status", "flagged_at"], unique=False)
    _fill_nodes()
    _refuse_changes()


def _fill_nodes() -> None:
    """Store the perfect subtrees of the events already in the trail, a batch at a time."""
    bind = op.get_bind()
    events = sa.table("audit_event", sa.column("seq", sa.BigInteger()), sa.column("hash", sa.String()))
    nodes = sa.table(
        "audit_node",
        sa.column("level", sa.SmallInteger()),
        sa.column("position", sa.BigInteger()),
        sa.column("hash", sa.LargeBinary()),
    )
    tree = CompactRange.empty()
    while True:
        rows = bind.execute(
            sa.select(events.c.seq, events.c.hash).where(events.c.seq > tree.size).order_by(events.c.seq).limit(10_000)
        ).all()
        if not rows:
            return
        made: list[dict[str, object]] = []
        for seq, hex_hash in rows:
            if seq != tree.size + 1:
                raise RuntimeError(f"audit event {tree.size + 1} is missing: run `gateway audit verify` before upgrading")
            made.extend(
                {"level": level, "position": position, "hash": node} for (level, position), node in tree.append(bytes.fromhex(hex_hash))
            )
        if made:
            bind.execute(sa.insert(nodes), made)


def _refuse_changes() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION audit_tree_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP;
            END $$
            """
        )
        for table in _APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION audit_tree_append_only()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION audit_tree_append_only()"
            )
        op.execute(
            "CREATE TRIGGER audit_pending_no_update BEFORE UPDATE ON audit_pending "
            "FOR EACH ROW EXECUTE FUNCTION audit_tree_append_only()"
        )
    else:
        op.execute(
            "CREATE TRIGGER audit_pending_no_update BEFORE UPDATE ON audit_pending "
            "BEGIN SELECT RAISE(ABORT, 'audit_pending is append-only: UPDATE refused'); END"
        )
        for table in _APPEND_ONLY:
            for operation in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {operation} refused'); END"
                )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in _APPEND_ONLY:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_change ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute("DROP TRIGGER IF EXISTS audit_pending_no_update ON audit_pending")
        op.execute("DROP FUNCTION IF EXISTS audit_tree_append_only()")
    with op.batch_alter_table("review_entry", schema=None) as batch_op:
        batch_op.drop_index("ix_review_entry_status_flagged")
        batch_op.drop_index("ix_review_entry_seq")
        batch_op.drop_index("ix_review_entry_child_id")
    op.drop_table("review_entry")
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_event_actor_id_occurred_at")
        batch_op.drop_index("ix_audit_event_trace_id")
    op.drop_table("audit_pending")
    op.drop_table("audit_checkpoint")
    op.drop_table("audit_node")
