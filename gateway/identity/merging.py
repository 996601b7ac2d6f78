"""Move records between children: merge two children, unmerge them, confirm or reject a proposed link.

Every move names what it moves by source record (client, record id), not by row, and keeps that
list in a `child_merge` row: unmerge moves back every version and every item of those records,
including those that arrived after the merge, and nothing else. Each identity and item moved is
sealed afresh under its new child's key (the sealing context binds it to its own row, so the
ciphertext cannot simply be relabelled): erasing a child keeps erasing everything about it.

Each action is audited on both children, and a merge or unmerge shows in both children's views
(`child_view` reads the `child_merge` rows).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, exists, or_, select, update
from sqlalchemy.orm import Session

from adapters import IdentityClaim
from audit import AuditAction, Outcome
from gateway.kit.auditor import Auditor
from gateway.kit.crypto import ChildErased, DataKeyring, OpenedKey, seal_value
from gateway.kit.db import lock_all_for_transaction
from gateway.kit.errors import Conflict, NotFound
from gateway.models import (
    Child,
    ChildIdentifier,
    ChildMerge,
    Consent,
    Identity,
    Item,
    ItemContent,
    ItemDetail,
    Link,
    LinkMethod,
    LinkState,
    MergeKind,
    Override,
    utcnow,
)
from policies import RecordStatus

from . import repository
from .authority import LinkingAuthority

SourceRecord = tuple[str, str]  # (client id, source record id)


@dataclass(frozen=True)
class Moved:
    """How much a move took from one child to the other."""

    identities: int
    items: int


def lock_merging(session: Session) -> None:
    """One merge, unmerge or move at a time in the whole gateway, taken before anything is read.

    They are rare (a person's decision, or a source correcting an identifier), and an unmerge
    learns which child it touches only by reading the merge: one lock for all cannot deadlock
    with the per-child order a read-then-lock would need.
    """
    lock_all_for_transaction(session, [("identity-merging",)])


def _keys(session: Session, keyring: DataKeyring, *child_ids: uuid.UUID) -> dict[uuid.UUID, bytes]:
    found = repository.get_wrapped_data_keys(session, child_ids=child_ids)
    keys: dict[uuid.UUID, bytes] = {}
    for child_id in child_ids:
        if child_id not in found:
            raise NotFound("No such child.")
        wrapped = found[child_id]
        if wrapped is None:
            raise ChildErased()
        keys[child_id] = keyring.unwrap(wrapped)
    return keys


def _move(
    session: Session,
    authority: LinkingAuthority,
    keyring: DataKeyring,
    records: Collection[SourceRecord],
    from_child_id: uuid.UUID,
    to_child_id: uuid.UUID,
    decided_by: str,
) -> Moved:
    """Move these records' identities (every version) and their items from one child to another."""
    if not records:
        return Moved(0, 0)
    keys = _keys(session, keyring, from_child_id, to_child_id)
    wanted = set(records)
    rows = session.execute(
        select(Identity, Link.id)
        .join(Link, and_(Link.identity_id == Identity.id, Link.state == LinkState.LINKED))
        .where(Link.child_id == from_child_id)
    ).all()
    moving = [(identity, link_id) for identity, link_id in rows if (identity.client_id, identity.source_record_id) in wanted]
    if not moving:
        return Moved(0, 0)
    old, new = OpenedKey(keys[from_child_id]), keys[to_child_id]
    session.execute(
        update(Identity),
        [
            {
                "id": identity.id,
                "sealed_claim": seal_value(
                    new,
                    old.unseal_value(identity.sealed_claim, IdentityClaim, context=identity.sealing_context),
                    IdentityClaim,
                    context=identity.sealing_context,
                ),
            }
            for identity, _ in moving
        ],
    )
    now = utcnow()
    session.execute(update(Link), [{"id": link_id, "state": LinkState.MOVED} for _, link_id in moving])
    session.add_all(
        Link(
            id=uuid.uuid4(),
            identity_id=identity.id,
            child_id=to_child_id,
            method=LinkMethod.MANUAL,
            score=None,
            state=LinkState.LINKED,
            decided_by=decided_by,
            decided_at=now,
            created_at=now,
        )
        for identity, _ in moving
    )
    identity_ids = [identity.id for identity, _ in moving]
    items = session.scalars(
        select(Item).where(Item.child_id == from_child_id, Item.identity_id.in_(identity_ids))
    ).all()
    updates: list[dict[str, Any]] = []
    for item in items:
        content = old.unseal_value(item.sealed_content, ItemContent, context=item.sealing_context)
        row: dict[str, Any] = {
            "id": item.id,
            "child_id": to_child_id,
            "sealed_content": seal_value(new, content, ItemContent, context=item.sealing_context),
        }
        if item.sealed_summary is not None:
            row["sealed_summary"] = seal_value(new, content.summary, str, context=Item.context_for(item.id, "summary"))
        if item.sealed_detail is not None:
            detail_context = Item.context_for(item.id, "detail")
            detail = old.unseal_value(item.sealed_detail, ItemDetail, context=detail_context)
            row["sealed_detail"] = seal_value(new, detail, ItemDetail, context=detail_context)
        updates.append(row)
    if updates:
        session.execute(update(Item), updates)
    session.flush()
    return Moved(len(moving), len(items))


def _source_records(session: Session, authority: LinkingAuthority, child_id: uuid.UUID) -> list[SourceRecord]:
    rows = session.execute(
        select(Identity.client_id, Identity.source_record_id)
        .join(Link, and_(Link.identity_id == Identity.id, Link.state == LinkState.LINKED))
        .where(Link.child_id == child_id)
        .distinct()
    ).all()
    return sorted((client_id, record_id) for client_id, record_id in rows)


def _audit_both(
    auditor: Auditor, action: AuditAction, children: Sequence[uuid.UUID], detail: dict[str, Any]
) -> None:
    for child_id in children:
        auditor.record(action, Outcome.SUCCESS, child_id=child_id, detail=detail)


def move_record(
    session: Session,
    authority: LinkingAuthority,
    *,
    auditor: Auditor,
    keyring: DataKeyring,
    source_record_id: str,
    from_child_id: uuid.UUID,
    to_child_id: uuid.UUID,
    propose_join: bool,
) -> Moved:
    """Move a record whose identifier now names another child, with all its versions and items.

    With `propose_join`, and where the child it leaves still has other records, a person is
    asked (a proposed link) whether the two children are one.
    """
    lock_merging(session)
    record = (authority.subject, source_record_id)
    moved = _move(session, authority, keyring, [record], from_child_id, to_child_id, decided_by=f"gateway:{authority.subject}")
    merge = ChildMerge(
        id=uuid.uuid4(),
        kind=MergeKind.MOVE,
        child_id=from_child_id,
        into_child_id=to_child_id,
        source_records=[list(record)],
        identifiers=[],
        consent_ids=[],
        override_ids=[],
        reason="the source's identifier for this record now names another child",
        merged_by=authority.subject,
    )
    session.add(merge)
    remaining = session.execute(
        select(Link.identity_id)
        .join(Identity, Identity.id == Link.identity_id)
        .where(Link.child_id == from_child_id, Link.state == LinkState.LINKED, Identity.status == RecordStatus.CURRENT)
        .order_by(Identity.received_at)
        .limit(1)
    ).scalar()
    if propose_join and remaining is not None:
        session.add(
            Link(
                id=uuid.uuid4(),
                identity_id=remaining,
                child_id=to_child_id,
                method=LinkMethod.MANUAL,
                score=None,
                state=LinkState.REVIEW,
                decided_by="gateway:review",
                reasons=[
                    {
                        "field": "note",
                        "level": "note",
                        "weight": 0.0,
                        "reason": "a record of this child gained an identifier that belongs to the other child",
                    }
                ],
            )
        )
    _audit_both(
        auditor,
        AuditAction.IDENTITY_RECORD_MOVED,
        (from_child_id, to_child_id),
        {
            "merge_id": str(merge.id),
            "from_child": str(from_child_id),
            "to_child": str(to_child_id),
            "identities": moved.identities,
            "items": moved.items,
        },
    )
    return moved


def retire_identifier(session: Session, authority: LinkingAuthority, *, child_id: uuid.UUID, scheme: str, blind_index: str) -> None:
    """Forget that an identifier names a child once none of the child's current records carries it.

    A record whose NHS number was corrected must not leave the old number pointing at its child:
    the old number's real owner would be linked there.
    """
    column = Identity.nhs_number_index if scheme == "nhs_number" else Identity.upn_index
    still_carried = exists(
        select(Identity.id)
        .join(Link, and_(Link.identity_id == Identity.id, Link.state == LinkState.LINKED))
        .where(Link.child_id == child_id, Identity.status == RecordStatus.CURRENT, column == blind_index)
    )
    session.execute(
        delete(ChildIdentifier).where(
            ChildIdentifier.scheme == scheme,
            ChildIdentifier.blind_index == blind_index,
            ChildIdentifier.child_id == child_id,
            ~still_carried,
        )
    )


def merge_children(
    session: Session,
    authority: LinkingAuthority,
    *,
    auditor: Auditor,
    keyring: DataKeyring,
    child_id: uuid.UUID,
    into_child_id: uuid.UUID,
    reason: str | None,
    link: Link | None = None,
) -> ChildMerge:
    """Merge one child into another: every record, identifier, consent and override goes across."""
    if child_id == into_child_id:
        raise Conflict("A child cannot be merged into itself.")
    lock_merging(session)
    children = {
        c.id: c
        for c in session.scalars(
            select(Child).where(Child.id.in_((child_id, into_child_id))).execution_options(populate_existing=True)
        )
    }
    if len(children) < 2:
        raise NotFound("No such child: both children must exist.")
    for which, child in (("child_id", children[child_id]), ("into_child_id", children[into_child_id])):
        if child.merged_into_id is not None:
            raise Conflict(
                f"The child named by {which} is already merged into another child "
                f"({child.merged_into_id}); unmerge it first, or merge with that child."
            )
    records = _source_records(session, authority, child_id)
    identifiers = session.execute(
        select(ChildIdentifier.scheme, ChildIdentifier.blind_index).where(ChildIdentifier.child_id == child_id)
    ).all()
    consent_ids = list(session.scalars(select(Consent.id).where(Consent.child_id == child_id)))
    override_ids = list(session.scalars(select(Override.id).where(Override.child_id == child_id)))
    moved = _move(session, authority, keyring, records, child_id, into_child_id, decided_by=authority.subject)
    session.execute(update(ChildIdentifier).where(ChildIdentifier.child_id == child_id).values(child_id=into_child_id))
    session.execute(update(Consent).where(Consent.child_id == child_id).values(child_id=into_child_id))
    session.execute(update(Override).where(Override.child_id == child_id).values(child_id=into_child_id))
    children[child_id].merged_into_id = into_child_id
    # Proposals pointing at the merged child now point at the one it joined; those between the
    # two are settled by the merge.
    retargeted = list(
        session.scalars(select(Link.id).where(Link.state == LinkState.REVIEW, Link.child_id == child_id))
    )
    if retargeted:
        session.execute(update(Link).where(Link.id.in_(retargeted)).values(child_id=into_child_id))
    settled = _settle_self_proposals(session, authority, into_child_id)
    merge = ChildMerge(
        id=uuid.uuid4(),
        kind=MergeKind.MERGE,
        child_id=child_id,
        into_child_id=into_child_id,
        link_id=None if link is None else link.id,
        source_records=[list(record) for record in records],
        identifiers=[[scheme, index] for scheme, index in identifiers],
        consent_ids=[str(i) for i in consent_ids],
        override_ids=[str(i) for i in override_ids],
        settled_link_ids=[str(i) for i in settled if link is None or i != link.id],
        retargeted_link_ids=[str(i) for i in retargeted],
        reason=reason,
        merged_by=authority.subject,
    )
    session.add(merge)
    session.flush()
    _audit_both(
        auditor,
        AuditAction.IDENTITY_CHILD_MERGED,
        (child_id, into_child_id),
        {
            "merge_id": str(merge.id),
            "child": str(child_id),
            "into_child": str(into_child_id),
            "identities": moved.identities,
            "items": moved.items,
            **({} if link is None else {"link_id": str(link.id)}),
        },
    )
    return merge


def _settle_self_proposals(session: Session, authority: LinkingAuthority, child_id: uuid.UUID) -> list[uuid.UUID]:
    """Mark confirmed the proposals whose identity is now on the very child they propose; return them."""
    on_child = select(Link.identity_id).where(Link.child_id == child_id, Link.state == LinkState.LINKED)
    settled = list(
        session.scalars(
            select(Link.id).where(Link.state == LinkState.REVIEW, Link.child_id == child_id, Link.identity_id.in_(on_child))
        )
    )
    if settled:
        session.execute(
            update(Link)
            .where(Link.id.in_(settled))
            .values(state=LinkState.CONFIRMED, decided_by=authority.subject, decided_at=utcnow())
        )
    return settled


def home_of(session: Session, child_id: uuid.UUID) -> uuid.UUID:
    """Follow merges from a child to the child its records are on now."""
    seen = {child_id}
    while True:
        merged_into = session.scalar(select(Child.merged_into_id).where(Child.id == child_id))
        if merged_into is None or merged_into in seen:
            return child_id
        seen.add(merged_into)
        child_id = merged_into


def unmerge_child(
    session: Session,
    authority: LinkingAuthority,
    *,
    auditor: Auditor,
    keyring: DataKeyring,
    child_id: uuid.UUID,
    reason: str | None,
) -> ChildMerge:
    """Undo a child's merge: its records (and what arrived for them since), identifiers, consents and overrides go back."""
    lock_merging(session)
    merge = session.scalars(
        select(ChildMerge)
        .where(ChildMerge.child_id == child_id, ChildMerge.kind == MergeKind.MERGE, ChildMerge.unmerged_at.is_(None))
        .order_by(ChildMerge.merged_at.desc())
        .limit(1)
        .execution_options(populate_existing=True)
    ).first()
    if merge is None:
        if session.get(Child, child_id) is None:
            raise NotFound("No such child.")
        raise Conflict("This child is not merged into another child: there is nothing to unmerge.")
    home = home_of(session, merge.into_child_id)
    records = [(client_id, record_id) for client_id, record_id in merge.source_records]
    moved = _move(session, authority, keyring, records, home, child_id, decided_by=authority.subject)
    for scheme, index in merge.identifiers:
        session.execute(
            update(ChildIdentifier)
            .where(ChildIdentifier.scheme == scheme, ChildIdentifier.blind_index == index, ChildIdentifier.child_id == home)
            .values(child_id=child_id)
        )
    for model, ids in ((Consent, merge.consent_ids), (Override, merge.override_ids)):
        if ids:
            session.execute(
                update(model)
                .where(model.id.in_([uuid.UUID(i) for i in ids]), model.child_id == home)
                .values(child_id=child_id)
            )
    child = session.get(Child, child_id)
    assert child is not None  # the merge row's foreign key holds it
    child.merged_into_id = None
    merge.unmerged_by = authority.subject
    merge.unmerged_at = utcnow()
    merge.unmerge_reason = reason
    confirmed = [uuid.UUID(i) for i in merge.settled_link_ids]
    if merge.link_id is not None:
        confirmed.append(merge.link_id)
    if confirmed:
        # The merge was wrong: what it confirmed is refused, so that it is not proposed again.
        session.execute(
            update(Link)
            .where(Link.id.in_(confirmed), Link.state == LinkState.CONFIRMED)
            .values(state=LinkState.REJECTED, decided_by=authority.subject, decided_at=utcnow())
        )
    if merge.retargeted_link_ids:
        session.execute(
            update(Link)
            .where(
                Link.id.in_([uuid.UUID(i) for i in merge.retargeted_link_ids]),
                Link.state == LinkState.REVIEW,
                Link.child_id == home,
            )
            .values(child_id=child_id)
        )
    session.flush()
    _audit_both(
        auditor,
        AuditAction.IDENTITY_CHILD_UNMERGED,
        (child_id, home),
        {
            "merge_id": str(merge.id),
            "child": str(child_id),
            "from_child": str(home),
            "identities": moved.identities,
            "items": moved.items,
        },
    )
    return merge


def current_child_of(session: Session, identity_id: uuid.UUID) -> uuid.UUID | None:
    """Return the child an identity is linked to now."""
    return session.scalar(
        select(Link.child_id).where(Link.identity_id == identity_id, Link.state == LinkState.LINKED)
    )


def pending_links(session: Session, authority: LinkingAuthority, child_ids: Collection[uuid.UUID] | None) -> list[Link]:
    """Return the proposed links waiting for a person, oldest first (all, or those touching these children)."""
    statement = select(Link).where(Link.state == LinkState.REVIEW).order_by(Link.created_at, Link.id)
    if child_ids is not None:
        on_children = select(Link.identity_id).where(Link.state == LinkState.LINKED, Link.child_id.in_(child_ids))
        statement = statement.where(or_(Link.child_id.in_(child_ids), Link.identity_id.in_(on_children)))
    return list(session.scalars(statement))
