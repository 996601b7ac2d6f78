"""Act as a database administrator bent on tampering: switch off the audit trail's triggers."""

from __future__ import annotations

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

# The SQLite triggers that keep the audit tables append-only (migrations 0001 and 0004).
_SQLITE_TRIGGERS = (
    "audit_event_no_update",
    "audit_event_no_delete",
    "audit_node_no_update",
    "audit_node_no_delete",
    "audit_checkpoint_no_update",
    "audit_checkpoint_no_delete",
)


def disable_audit_triggers(bind: Connection | Session) -> None:
    """Disable the append-only triggers for the rest of the current transaction (tests only)."""
    dialect = bind.get_bind().dialect.name if isinstance(bind, Session) else bind.dialect.name
    if dialect == "postgresql":
        # Superuser only, and scoped to this transaction: what a rogue DBA could do.
        bind.execute(text("SET LOCAL session_replication_role = replica"))
    else:
        # SQLite DDL is transactional: rolling the test back puts the triggers back.
        for trigger in _SQLITE_TRIGGERS:
            bind.execute(text(f"DROP TRIGGER IF EXISTS {trigger}"))
