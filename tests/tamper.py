"""Act as a database administrator bent on tampering: switch off the audit trail's triggers."""

from __future__ import annotations

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session


def disable_audit_triggers(bind: Connection | Session) -> None:
    """Disable the append-only triggers for the rest of the current transaction (tests only)."""
    dialect = bind.get_bind().dialect.name if isinstance(bind, Session) else bind.dialect.name
    if dialect == "postgresql":
        # Superuser only, and scoped to this transaction: what a rogue DBA could do.
        bind.execute(text("SET LOCAL session_replication_role = replica"))
    else:
        # SQLite DDL is transactional: rolling the test back puts the triggers back.
        bind.execute(text("DROP TRIGGER IF EXISTS audit_event_no_update"))
        bind.execute(text("DROP TRIGGER IF EXISTS audit_event_no_delete"))
