"""The linking review queue, confirm and reject, merge and unmerge (routes only)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query

from gateway.auth.dependencies import CallerAuditor, StaffPrincipal
from gateway.kit.context import ActivePolicy, Keyring
from gateway.kit.db import DbSession
from gateway.kit.errors import ProblemRoute, problem_openapi

from . import review
from .schemas import DecisionWrite, LinkDecisionRead, MergeRead, MergeWrite, ReviewQueueRead, UnmergeWrite

ERRORS: dict[int | str, dict[str, Any]] = {
    401: problem_openapi("No valid bearer token."),
    403: problem_openapi("Not a linking officer, nor the lead practitioner of the child's allocated team."),
    422: problem_openapi("A parameter or the body is not valid."),
    503: problem_openapi("The database is busy; retry after the Retry-After seconds."),
}
DECIDED: dict[int | str, dict[str, Any]] = {
    404: problem_openapi("No such proposed link, or no such child."),
    409: problem_openapi("Already decided, already merged, or never merged."),
    410: problem_openapi("A child's record has been erased."),
}

router = APIRouter(tags=["linking"], route_class=ProblemRoute)


@router.get("/links/review", response_model=ReviewQueueRead, summary="Proposed links waiting for a person", responses=ERRORS)
def get_review_queue(
    session: DbSession,
    principal: StaffPrincipal,
    auditor: CallerAuditor,
    keyring: Keyring,
    policy: ActivePolicy,
    limit: Annotated[int, Query(ge=1, le=100, description="How many pairs to show, oldest first.")] = 20,
) -> ReviewQueueRead:
    """Each pair side by side: both records as their sources sent them, the score and each field's reason."""
    return review.list_queue(session, principal, auditor=auditor, keyring=keyring, policy=policy, limit=limit)


@router.post(
    "/links/{link_id}/confirm",
    response_model=LinkDecisionRead,
    summary="Confirm a proposed link: the two children are one",
    responses={**ERRORS, **DECIDED},
)
def confirm_link(
    session: DbSession,
    principal: StaffPrincipal,
    auditor: CallerAuditor,
    keyring: Keyring,
    policy: ActivePolicy,
    link_id: uuid.UUID,
    body: Annotated[DecisionWrite | None, Body()] = None,
) -> LinkDecisionRead:
    """Merge the record's child into the candidate child (undo with unmerge)."""
    return review.decide(
        session, principal, auditor=auditor, keyring=keyring, policy=policy, link_id=link_id, confirm=True,
        note=None if body is None else body.note,
    )


@router.post(
    "/links/{link_id}/reject",
    response_model=LinkDecisionRead,
    summary="Reject a proposed link: two children",
    responses={**ERRORS, **DECIDED},
)
def reject_link(
    session: DbSession,
    principal: StaffPrincipal,
    auditor: CallerAuditor,
    keyring: Keyring,
    policy: ActivePolicy,
    link_id: uuid.UUID,
    body: Annotated[DecisionWrite | None, Body()] = None,
) -> LinkDecisionRead:
    """Keep the two apart; the pair is not proposed again."""
    return review.decide(
        session, principal, auditor=auditor, keyring=keyring, policy=policy, link_id=link_id, confirm=False,
        note=None if body is None else body.note,
    )


@router.post(
    "/children/merge",
    response_model=MergeRead,
    status_code=201,
    summary="Merge two children into one",
    responses={**ERRORS, **DECIDED},
)
def merge_children(
    session: DbSession,
    principal: StaffPrincipal,
    auditor: CallerAuditor,
    keyring: Keyring,
    policy: ActivePolicy,
    body: MergeWrite,
) -> MergeRead:
    """Every record, identifier, consent and override of `child_id` moves to `into_child_id`."""
    return review.merge(
        session, principal, auditor=auditor, keyring=keyring, policy=policy, child_id=body.child_id,
        into_child_id=body.into_child_id, reason=body.reason,
    )


@router.post(
    "/children/{child_id}/unmerge",
    response_model=MergeRead,
    summary="Undo a child's merge",
    responses={**ERRORS, **DECIDED},
)
def unmerge_child(
    session: DbSession,
    principal: StaffPrincipal,
    auditor: CallerAuditor,
    keyring: Keyring,
    policy: ActivePolicy,
    child_id: uuid.UUID,
    body: UnmergeWrite,
) -> MergeRead:
    """Every record the merge took (and whatever arrived for those records since) goes back."""
    return review.unmerge(
        session, principal, auditor=auditor, keyring=keyring, policy=policy, child_id=child_id, reason=body.reason
    )
