"""Who is calling: a staff member or an agency system."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from audit import Actor, ActorType
from policies import Agency


class PrincipalKind(StrEnum):
    """The two kinds of caller; each reaches its own set of routes only."""

    STAFF = "staff"
    CLIENT = "client"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller, from a verified access token."""

    kind: PrincipalKind
    subject: str
    agency: Agency
    role: str | None = None

    def actor(self) -> Actor:
        """Return how this caller appears in the audit trail."""
        actor_type = ActorType.USER if self.kind is PrincipalKind.STAFF else ActorType.CLIENT
        return Actor(type=actor_type, id=self.subject, agency=self.agency, role=self.role)
