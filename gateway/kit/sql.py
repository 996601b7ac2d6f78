"""SQL expressions shared by the repositories, written once for both databases."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, any_, bindparam
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session


def dialect_of(session: Session) -> str:
    """Return the name of the database dialect the session is bound to (postgresql, sqlite)."""
    return session.get_bind().dialect.name


def one_of(column: Any, values: Iterable[Any], *, dialect: str) -> ColumnElement[bool]:
    """Return `column IN (values)`; on PostgreSQL `column = ANY(array)`, one parameter whatever the count.

    A long IN list makes a long SQL text, which psycopg parses afresh on every execution (it
    caches only short ones); one array parameter keeps the text short and the parse cached.
    """
    listed = list(values)
    condition: ColumnElement[bool]
    if dialect == "postgresql":
        condition = column == any_(bindparam(None, listed, type_=postgresql.ARRAY(column.type)))
    else:
        condition = column.in_(listed)
    return condition
