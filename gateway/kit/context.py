"""What a request may use, as typed dependencies: settings, keys, the policy and the auditor.

Built once in the app factory and kept on `app.state`; endpoints name what they need by type
(`keyring: Keyring`) instead of reaching into the app.
"""

from __future__ import annotations

from typing import Annotated, TypeVar

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from adapters.sensitivity import Classifier
from audit import Actor, NoteSigner
from gateway.notifications.routing import Routing
from gateway.settings import Settings
from policies import Policy

from .auditor import Auditor, ReviewRules
from .crypto import DataKeyring
from .db import DbSession

T = TypeVar("T")


async def get_settings(request: Request) -> Settings:
    """Return the settings the app was built with."""
    return _built(request, "settings", Settings)


async def get_keyring(request: Request) -> DataKeyring:
    """Return the data keyring (key-encryption key and blind-index key)."""
    return _built(request, "keyring", DataKeyring)


async def get_engine(request: Request) -> Engine:
    """Return the app's database engine (for checks outside the request's transaction)."""
    return _built(request, "engine", Engine)


async def get_audit_signer(request: Request) -> NoteSigner:
    """Return the audit log's checkpoint signer (its verifier key is public)."""
    return _built(request, "audit_signer", NoteSigner)


async def get_policy(request: Request) -> Policy:
    """Return the partnership's ISA in force."""
    return _built(request, "policy", Policy)


async def get_classifier(request: Request) -> Classifier:
    """Return the sensitivity classifier (the shipped code list and the partnership's own)."""
    return _built(request, "classifier", Classifier)


async def get_routing(request: Request) -> Routing:
    """Return how new records are routed to inboxes (the ISA, when a school day starts)."""
    return _built(request, "routing", Routing)


def _built(request: Request, name: str, kind: type[T]) -> T:
    # What the app factory built and kept on app.state, checked for its type once more here so
    # that a wrong assignment fails loudly instead of surfacing later as an AttributeError.
    value = getattr(request.app.state, name)
    if not isinstance(value, kind):
        raise TypeError(f"app.state.{name} is not a {kind.__name__}")
    return value


def request_id(request: Request) -> str | None:
    """Return the id the request middleware gave this request."""
    value: str | None = getattr(request.state, "request_id", None)
    return value


def auditor_for(request: Request, session: Session, actor: Actor | None) -> Auditor:
    """Return an auditor writing in the request's session, as `actor`, with its request id and the review rules."""
    rules: ReviewRules | None = getattr(request.app.state, "review_rules", None)
    return Auditor(session, actor, request_id=request_id(request), rules=rules)


async def get_anonymous_auditor(request: Request, session: DbSession) -> Auditor:
    """Return an auditor for a caller not yet authenticated: each event names its actor."""
    return auditor_for(request, session, None)


AppSettings = Annotated[Settings, Depends(get_settings)]
Keyring = Annotated[DataKeyring, Depends(get_keyring)]
ActivePolicy = Annotated[Policy, Depends(get_policy)]
ActiveRouting = Annotated[Routing, Depends(get_routing)]
SensitivityClassifier = Annotated[Classifier, Depends(get_classifier)]
AuditSigner = Annotated[NoteSigner, Depends(get_audit_signer)]
DatabaseEngine = Annotated[Engine, Depends(get_engine)]
AnonymousAuditor = Annotated[Auditor, Depends(get_anonymous_auditor)]
