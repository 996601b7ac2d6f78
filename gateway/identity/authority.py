"""Leave to work on children's records by child id, for linking: the other gate besides ChildAccess.

Viewing a child's data needs a `ChildAccess` (cases.access). Linking needs something else: it
reads and moves the identities and items of children that nobody has opened, by child id (the
candidates of a claim, the two children of a merge). A `LinkingAuthority` says who does it and
on what standing; every function of `gateway.identity` that queries a child's data by a bare
child id takes one, and only `grant_for_push` (an agency's push being linked),
`grant_for_search` (a staff member's search, which compares and never shows) and
`review.authorise` (a linking officer or a lead practitioner, checked there) make one.
tests/gateway/test_child_scope.py holds both rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from gateway.auth.principal import Principal


class Standing(StrEnum):
    """Why the caller may work on children's records by id."""

    PUSH = "push"  # linking the claims of an agency's push
    LINKING_OFFICER = "linking_officer"  # a role the ISA names in linking_roles
    LEAD_PRACTITIONER = "lead_practitioner"  # of an open case on one of the children concerned
    SEARCH = "search"  # a staff member's search: identities compared, shown only where the access query opens the child


@dataclass(frozen=True)
class LinkingAuthority:
    """Who is linking, and on what standing."""

    subject: str
    standing: Standing


def grant_for_push(principal: Principal) -> LinkingAuthority:
    """Return the authority an agency's push has to link its own claims."""
    return LinkingAuthority(subject=principal.subject, standing=Standing.PUSH)


def grant_for_search(principal: Principal) -> LinkingAuthority:
    """Return the authority a staff member's search has to compare its terms with children's identities.

    What the search unseals is compared and dropped: a matched child is shown only when the
    access query opens it to the caller (gateway.search.service), the rest are only counted.
    """
    return LinkingAuthority(subject=principal.subject, standing=Standing.SEARCH)
