"""What a request may use, as typed dependencies: settings, keys, the policy and the auditor.

Built once in the app factory and kept on `app.state`; endpoints name what they need by type
(`keyring: Keyring`) instead of reaching into the app.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from audit import Actor
from gateway.settings import Settings
from policies import Policy

from .auditor import Auditor
from .crypto import DataKeyring
from .db import DbSession


async def get_settings(request: Request) -> Settings:
    """Return the settings the app was built with."""
    settings: Settings = request.app.state.settings
    return settings


async def get_keyring(request: Request) -> DataKeyring:
    """Return the data keyring (key-encryption key and blind-index key)."""
    keyring: DataKeyring = request.app.state.keyring
    return keyring


async def get_policy(request: Request) -> Policy:
    """Return the partnership's ISA in force."""
    policy: Policy = request.app.state.policy
    return policy


def request_id(request: Request) -> str | None:
    """Return the id the request middleware gave this request."""
    value: str | None = getattr(request.state, "request_id", None)
    return value


def auditor_for(request: Request, session: Session, actor: Actor | None) -> Auditor:
    """Return an auditor writing in the request's session, as `actor`, with its request id."""
    return Auditor(session, actor, request_id=request_id(request))


async def get_anonymous_auditor(request: Request, session: DbSession) -> Auditor:
    """Return an auditor for a caller not yet authenticated: each event names its actor."""
    return auditor_for(request, session, None)


AppSettings = Annotated[Settings, Depends(get_settings)]
Keyring = Annotated[DataKeyring, Depends(get_keyring)]
ActivePolicy = Annotated[Policy, Depends(get_policy)]
AnonymousAuditor = Annotated[Auditor, Depends(get_anonymous_auditor)]
