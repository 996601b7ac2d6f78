"""What a viewer is to a child, and why: the one thing that opens a child's data.

A `ChildAccess` is made only by the access query (`cases.repository.get_child_access`, which
`cases.service.require_child_access` calls, auditing a refusal). Every repository function
that reads a child's data takes one instead of a bare child id, so a read that skipped the
gate does not type-check. tests/gateway/test_child_scope.py fails when a query of a child's
data bypasses this, or when a ChildAccess is built anywhere else.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from policies import Agency, Relationship


@dataclass(frozen=True)
class AllocationGrant:
    """The viewer is an active member of the team a child's open case is allocated to."""

    case_id: uuid.UUID
    team_id: uuid.UUID
    member_id: uuid.UUID


@dataclass(frozen=True)
class BreakGlassGrant:
    """The viewer broke the glass: time-limited access without allocation, every view reviewed."""

    break_glass_id: uuid.UUID
    expires_at: datetime


Grant = AllocationGrant | BreakGlassGrant


@dataclass(frozen=True)
class ChildAccess:
    """Who is looking at which child, in what capacity, and on what grant."""

    child_id: uuid.UUID
    subject: str
    agency: Agency
    role: str
    relationship: Relationship
    grant: Grant
