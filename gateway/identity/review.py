"""The linking review queue: who may decide, the pairs side by side, confirm, reject, merge, unmerge.

Who may work it (deny by default): staff whose role the ISA names in `linking_roles` see and
decide every pair, and merge or unmerge any two children; the lead practitioner of a team with
an open case on a child sees and decides the pairs about that child, and nothing else. Showing
a pair discloses two children's identities, so each listing is audited once per child shown.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from adapters import IdentityClaim
from audit import AuditAction, Outcome
from gateway.auth.principal import Principal
from gateway.cases.repository import select_accessible_children
from gateway.kit.auditor import Auditor
from gateway.kit.crypto import DataKeyring, unseal_value
from gateway.kit.db import lock_all_for_transaction
from gateway.kit.errors import Conflict, Forbidden, NotFound
from gateway.models import Child, ChildMerge, Client, Identity, Link, LinkState, TeamMember, utcnow
from policies import Policy, RecordStatus

from . import merging
from .authority import LinkingAuthority, Standing
from .schemas import LinkDecisionRead, MergeRead, ProposedLinkRead, ReasonRead, ReviewQueueRead, SideRead
from .scoring import DEFAULT_PARAMETERS

LEAD_PRACTITIONER_ROLE = "lead_practitioner"


def _is_linking_officer(principal: Principal, policy: Policy) -> bool:
    return principal.role is not None and principal.role in policy.linking_roles


def _led_children(session: Session, principal: Principal) -> set[uuid.UUID]:
    """The children of open cases on which the caller is their team's lead practitioner."""
    rows = session.execute(select_accessible_children(principal).where(TeamMember.role == LEAD_PRACTITIONER_ROLE))
    return {child_id for child_id, *_ in rows}


def _refuse(auditor: Auditor, message: str, *, child_id: uuid.UUID | None = None) -> Forbidden:
    return auditor.refuse(Forbidden(message), AuditAction.IDENTITY_LINK_REFUSED, child_id=child_id)


def authorise(
    session: Session, principal: Principal, policy: Policy, auditor: Auditor
) -> tuple[LinkingAuthority, set[uuid.UUID] | None]:
    """Return the caller's linking authority and the children whose pairs they may decide (None:
    all). Refuses, audited, anyone who is neither a linking officer nor a lead practitioner."""
    if _is_linking_officer(principal, policy):
        return LinkingAuthority(principal.subject, Standing.LINKING_OFFICER), None
    led = _led_children(session, principal)
    if not led:
        raise _refuse(
            auditor,
            "The linking review queue is for linking officers (roles "
            + ", ".join(policy.linking_roles)
            + ") and for the lead practitioner of a child's allocated team. This refusal has been recorded.",
        )
    return LinkingAuthority(principal.subject, Standing.LEAD_PRACTITIONER), led


def list_queue(
    session: Session,
    principal: Principal,
    *,
    auditor: Auditor,
    keyring: DataKeyring,
    policy: Policy,
    limit: int,
) -> ReviewQueueRead:
    """Return the pairs waiting for a person that the caller may decide, side by side."""
    authority, scope = authorise(session, principal, policy, auditor)
    pending = merging.pending_links(session, authority, scope)
    shown = pending[:limit]
    pairs = [_pair(session, authority, keyring, link) for link in shown]
    for child_id in sorted({side.child_id for pair in pairs for side in (pair.record, pair.candidate)}, key=str):
        auditor.record(
            AuditAction.IDENTITY_REVIEW_LISTED,
            Outcome.SUCCESS,
            child_id=child_id,
            detail={"links": sorted(str(p.link_id) for p in pairs if child_id in (p.record.child_id, p.candidate.child_id))},
        )
    return ReviewQueueRead(links=pairs, total=len(pending))


def _pair(session: Session, authority: LinkingAuthority, keyring: DataKeyring, link: Link) -> ProposedLinkRead:
    record_child = merging.current_child_of(session, link.identity_id)
    candidate_child = merging.home_of(session, link.child_id)
    candidate_identity = link.candidate_identity_id
    if candidate_identity is None or merging.current_child_of(session, candidate_identity) != candidate_child:
        candidate_identity = _a_current_identity(session, authority, candidate_child)
    return ProposedLinkRead(
        link_id=link.id,
        proposed_at=link.created_at,
        score=None if link.score is None else round(link.score, 2),
        thresholds={"lower": DEFAULT_PARAMETERS.lower, "upper": DEFAULT_PARAMETERS.upper},
        reasons=[ReasonRead(**reason) for reason in link.reasons or []],
        record=_side(session, authority, keyring, record_child or link.child_id, link.identity_id),
        candidate=_side(session, authority, keyring, candidate_child, candidate_identity),
    )


def _a_current_identity(session: Session, authority: LinkingAuthority, child_id: uuid.UUID) -> uuid.UUID | None:
    return session.scalar(
        select(Identity.id)
        .join(Link, Link.identity_id == Identity.id)
        .where(Link.child_id == child_id, Link.state == LinkState.LINKED, Identity.status == RecordStatus.CURRENT)
        .order_by(Identity.received_at)
        .limit(1)
    )


def _side(
    session: Session, authority: LinkingAuthority, keyring: DataKeyring, child_id: uuid.UUID, identity_id: uuid.UUID | None) -> SideRead:
    records = session.scalar(
        select(func.count(func.distinct(Identity.source_record_id)))
        .join(Link, Link.identity_id == Identity.id)
        .where(Link.child_id == child_id, Link.state == LinkState.LINKED)
    ) or 0
    identity = None if identity_id is None else session.get(Identity, identity_id)
    wrapped = session.scalar(select(Child.wrapped_data_key).where(Child.id == child_id))
    if identity is None or wrapped is None:
        return SideRead(
            child_id=child_id, identity_id=None, agency=None, source=None, source_record_id=None, received_at=None,
            nhs_number=None, upn=None, given_names=[], family_name=None, birth_date=None, sex=None, postcode=None,
            address_lines=[], records=records,
        )
    claim = unseal_value(keyring.unwrap(wrapped), identity.sealed_claim, IdentityClaim, context=identity.sealing_context)
    source = session.scalar(select(Client.name).where(Client.id == identity.client_id))
    return SideRead(
        child_id=child_id,
        identity_id=identity.id,
        agency=identity.agency.value,
        source=source,
        source_record_id=identity.source_record_id,
        received_at=identity.received_at,
        nhs_number=claim.nhs_number,
        upn=claim.upn,
        given_names=list(claim.given_names),
        family_name=claim.family_name,
        birth_date=claim.birth_date,
        sex=claim.sex,
        postcode=claim.postcode,
        address_lines=list(claim.address_lines),
        records=records,
    )


def decide(
    session: Session,
    principal: Principal,
    *,
    auditor: Auditor,
    keyring: DataKeyring,
    policy: Policy,
    link_id: uuid.UUID,
    confirm: bool,
    note: str | None,
) -> LinkDecisionRead:
    """Confirm a proposed link (the two children become one: a merge) or reject it."""
    # Who may decide at all is settled first: the same refusal whether or not the link exists.
    authority, scope = authorise(session, principal, policy, auditor)
    lock_all_for_transaction(session, [("link", str(link_id))])
    link = session.get(Link, link_id, populate_existing=True)
    if link is None or link.state in (LinkState.LINKED, LinkState.MOVED):
        raise NotFound("No such proposed link.")
    record_child = merging.current_child_of(session, link.identity_id)
    candidate_child = merging.home_of(session, link.child_id)
    children = {c for c in (record_child, candidate_child) if c is not None}
    if scope is not None and not children & scope:
        raise _refuse(
            auditor,
            "You may decide only the proposed links about a child whose allocated team you lead. "
            "This refusal has been recorded.",
            child_id=candidate_child,
        )
    if link.state is not LinkState.REVIEW:
        raise Conflict(
            f"This proposed link was already {link.state.value} by {link.decided_by} "
            f"at {link.decided_at.isoformat()}; it cannot be decided again."
        )
    merge = None
    if confirm and record_child is not None and record_child != candidate_child:
        merge = merging.merge_children(
            session,
            authority,
            auditor=auditor,
            keyring=keyring,
            child_id=record_child,
            into_child_id=candidate_child,
            reason=note,
            link=link,
        )
    link.state = LinkState.CONFIRMED if confirm else LinkState.REJECTED
    link.decided_by = principal.subject
    link.decided_at = utcnow()
    link.note = note
    session.flush()
    for child_id in sorted(children, key=str):
        auditor.record(
            AuditAction.IDENTITY_LINK_CONFIRMED if confirm else AuditAction.IDENTITY_LINK_REJECTED,
            Outcome.SUCCESS,
            child_id=child_id,
            # The note stays on the link (it may name people); the event says that there is one.
            detail={
                "link_id": str(link.id),
                "note": note is not None,
                **({} if merge is None else {"merge_id": str(merge.id)}),
            },
        )
    return LinkDecisionRead(
        link_id=link.id,
        state=link.state.value,
        decided_by=link.decided_by,
        decided_at=link.decided_at,
        merge_id=None if merge is None else merge.id,
        child_id=candidate_child if confirm else (record_child or link.child_id),
    )


def _require_linking_officer(
    principal: Principal, policy: Policy, auditor: Auditor, children: Collection[uuid.UUID]
) -> LinkingAuthority:
    if not _is_linking_officer(principal, policy):
        raise _refuse(
            auditor,
            "Merging and unmerging children is for linking officers (roles "
            + ", ".join(policy.linking_roles)
            + "). This refusal has been recorded.",
            child_id=next(iter(children), None),
        )
    return LinkingAuthority(principal.subject, Standing.LINKING_OFFICER)


def merge(
    session: Session,
    principal: Principal,
    *,
    auditor: Auditor,
    keyring: DataKeyring,
    policy: Policy,
    child_id: uuid.UUID,
    into_child_id: uuid.UUID,
    reason: str,
) -> MergeRead:
    """Merge one child into another (linking officers only)."""
    authority = _require_linking_officer(principal, policy, auditor, (child_id, into_child_id))
    done = merging.merge_children(
        session, authority, auditor=auditor, keyring=keyring, child_id=child_id, into_child_id=into_child_id, reason=reason
    )
    return _merge_read(done)


def unmerge(
    session: Session,
    principal: Principal,
    *,
    auditor: Auditor,
    keyring: DataKeyring,
    policy: Policy,
    child_id: uuid.UUID,
    reason: str,
) -> MergeRead:
    """Undo a child's merge (linking officers only)."""
    authority = _require_linking_officer(principal, policy, auditor, (child_id,))
    done = merging.unmerge_child(session, authority, auditor=auditor, keyring=keyring, child_id=child_id, reason=reason)
    return _merge_read(done)


def _merge_read(done: ChildMerge) -> MergeRead:
    return MergeRead(
        merge_id=done.id,
        child_id=done.child_id,
        into_child_id=done.into_child_id,
        source_records=len(done.source_records),
        identifiers=len(done.identifiers),
        merged_by=done.merged_by,
        merged_at=done.merged_at,
        unmerged_by=done.unmerged_by,
        unmerged_at=done.unmerged_at,
    )
