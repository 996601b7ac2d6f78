"""Answer another agency's `$person-info-query` (the SocialCareData MAIS Data Exchange Standard, v0.3).

A registered agency system asks whether a person is known here, stating the legislation it
acts under (`reason`). The answer is never the child's records: at most whether the child is
open to a MACPT here and, for lawful follow-up, whom to contact (the allocated team, its local
authority and its lead practitioner's name). Parameter names are the standard's (`resource`,
`reason`; `match`, `contact`); `outcome` and `reference` are the gateway's own (see
adapters/person_info_query.py).

The steps, each refusal audited (`client:person-query:rejected`) with no personal value:

1. The caller: an active client registered for queries (`PERSON_INFO_QUERY` among its
   allowed kinds, beside the record kinds it may push), else 403. A system registered to push
   records may not probe the index of children by that alone.
2. The body: FHIR JSON or XML (else 415), at most `QUERY_MAX_BYTES` (else 413), a valid
   Parameters (else 400) with one `reason` (a valueUri) and one `resource` (a Patient) with a
   valid NHS number, or a family name and full birth date (else 422, naming the field).
3. The ISA (`Policy.decide_person_info_query`) decides on the reason and the querying agency
   alone, before anything is matched. DENY: 403, and nothing is matched, so a refusal says
   nothing about any child (not even "not known": an agency told `match: false` might stop an
   enquiry on a wrong answer) and processes no one's data beyond checking the request.
4. Matching is the staff search's, through linking (`gateway.identity.matching`): the NHS
   number exactly, else every given field (family name, first given name, birth date) agreeing
   at linking's levels. More than one child matching, or more candidates than a search
   compares, is no unique match: the answer is the same `match: false` as for nobody, with the
   same words, so that it reveals nothing about other children.
5. `match` says whether the person is *open to a MACPT here* (a unique child with an open case
   of an active team), not merely that some agency has pushed a record about them: a child the
   gateway holds records of but no team works with has no one to follow up with, and saying
   "known" would disclose that agencies hold records about the child.
6. PERMIT: `match` and, when true, one `contact` Organization per open case. REVIEW: no
   `match`; when the person is open here, the query waits on each allocated team's queue
   (`person_query_referral`) for the lead practitioner to decide; the answer is the same either
   way (an `outcome` and a `reference`), so that a referral reveals nothing either.

Every answered, referred or denied query is audited with its reason URI, the ISA's decision,
rule and policy version, the child when one matched uniquely, and a keyed hash of the
normalised terms (the staff search's scheme and form, so that IG can tell that an agency's query
and a staff search were for the same person without the trail holding a name, a birth date or a
number). Nothing personal goes into logs or spans.

The ISA decides the reason by its legislation URI, http/https and legislation.gov.uk's `/id`
form alike (policies/isa.py). Reads only, and one INSERT for a referral: no lock is taken.

The queue (`GET /api/v1/person-queries`, `POST /api/v1/person-queries/{id}/decision`): a
referral is listed to, and decided by, the lead practitioner of its open case (an active
member of the case's team whose role is `lead_practitioner`, or whom the case names as its
lead); to anyone else a referral does not exist (404, the same whether or not it does). It is
decided once, under SELECT … FOR UPDATE (409 after). Each listing is audited with the ids
shown, each decision with the referral, its reference and the decision; the note is sealed
under the child's data key and never enters the trail.

How the querying agency learns the outcome: the gateway does not tell it. `share_contact`
records that the lead practitioner will follow the query up with the agency (the listing shows
the querying system's name and agency, and the reference it quotes); `decline` that they will
not. A repeat query is answered as the first was (an `outcome` and a fresh `reference`),
whatever was decided, so that an answer never depends on a decision the agency cannot see.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, NoReturn

from opentelemetry import trace
from sqlalchemy.orm import Session

from adapters import AdapterError, Issue
from adapters.person_info_query import (
    MEDIA_TYPES,
    PATIENT_PATH,
    Contact,
    PersonQuery,
    UnanswerableQuery,
    known_answer,
    parse_query,
    referred_answer,
    unknown_answer,
)
from audit import AuditAction, Outcome
from gateway.auth.principal import Principal
from gateway.identity import repository as identity_repository
from gateway.identity.authority import grant_for_search
from gateway.identity.matching import Matches, SearchField, match_demographics, match_nhs_number
from gateway.identity.scoring import Demographics, normalise_name
from gateway.kit.auditor import Auditor
from gateway.kit.crypto import ChildErased, DataKeyring, OpenedKey, seal_value
from gateway.kit.errors import (
    Conflict,
    ErrorDetail,
    Forbidden,
    GatewayError,
    InvalidPayload,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
)
from gateway.models import Client, PersonQueryReferral, ReferralStatus, utcnow
from gateway.search.service import TERMS_SCHEME
from policies import Policy
from policies.isa import QueryDecision, QueryVerdict, normalise_reason

from . import repository
from .schemas import (
    PersonQueryDecisionCreate,
    PersonQueryDecisionRead,
    PersonQueryReferralRead,
    PersonQueryReferralsRead,
    ReferralDecision,
    ReferralFilter,
)

tracer = trace.get_tracer("gateway.mais")

# What a client's allowed kinds must name for it to query (beside the record kinds it may push).
PERSON_INFO_QUERY = "person_info_query"
# A Parameters with one Patient is a few kilobytes; anything near this is not a query.
QUERY_MAX_BYTES = 64 * 1024

NO_UNIQUE_MATCH = (
    "No person open to a Multi-Agency Child Protection Team here matched this query uniquely. This is the "
    "answer both when nobody matched and when more than one person did: if you hold the person's NHS number "
    "and did not send it, query again with it. The query has been recorded."
)
REFERRED = (
    "This query has been referred for review under the partnership's information-sharing agreement: no "
    "answer is given through this interface. If the person is open to a Multi-Agency Child Protection Team "
    "here, its lead practitioner will decide whether to contact you; quote the reference. The query has "
    "been recorded."
)


@dataclass(frozen=True)
class QueryBody:
    """A query's media type and bytes; `content` is None when the body went past the limit (not read on)."""

    media_type: str
    content: bytes | None


@dataclass(frozen=True)
class _Found:
    """What matching found: the one child (or None), how many candidates, and the open allocations."""

    child_id: uuid.UUID | None
    candidates: int
    limited: bool
    allocations: list[repository.OpenAllocation]


def query_person(
    session: Session, principal: Principal, *, auditor: Auditor, keyring: DataKeyring, policy: Policy, body: QueryBody
) -> dict[str, Any]:
    """Answer an agency's query as the ISA decides (a FHIR Parameters); refuse, audited, what cannot be answered."""
    with tracer.start_as_current_span("person_info_query") as span:
        client = _registered_client(session, principal, auditor)
        query = _read(body, auditor)
        verdict = policy.decide_person_info_query(reason=query.reason, agency=client.agency)
        span.set_attribute("gateway.query.decision", verdict.decision.value)
        if verdict.decision is QueryDecision.DENY:
            raise auditor.refuse(
                Forbidden(
                    "The partnership's information-sharing agreement does not permit queries from your agency "
                    "for this reason; nothing was matched. Ask the partnership's information governance lead "
                    "which reasons your agency may query under."
                ),
                AuditAction.CLIENT_PERSON_QUERY_DENIED,
                detail=_verdict_detail(query, verdict),
            )
        terms, criteria = _terms(query)
        found = _find(session, principal, keyring=keyring, query=query, criteria=criteria)
        span.set_attribute("gateway.query.candidates", found.candidates)
        detail = {
            **_verdict_detail(query, verdict),
            "criteria": [field.value for field in criteria],
            "terms": keyring.blind_index(TERMS_SCHEME, terms),
            "candidates": found.candidates,
            "limited": found.limited,
            "open_cases": len(found.allocations),
        }
        if verdict.decision is QueryDecision.REVIEW:
            return _refer(session, client, auditor=auditor, query=query, verdict=verdict, found=found, detail=detail)
        matched = bool(found.allocations)
        auditor.record(
            AuditAction.CLIENT_PERSON_QUERY_ANSWERED,
            Outcome.SUCCESS,
            child_id=found.child_id,
            lawful_basis=verdict.lawful_basis if matched else None,
            policy_version=verdict.policy_version,
            detail={**detail, "match": matched, "contacts": [str(a.team_id) for a in found.allocations]},
        )
        if not matched:
            return unknown_answer(NO_UNIQUE_MATCH)
        return known_answer(
            [Contact(a.team_name, a.local_authority, a.lead_name) for a in found.allocations]
        )


def _registered_client(session: Session, principal: Principal, auditor: Auditor) -> Client:
    client = repository.get_client(session, client_id=principal.subject)
    if client is None or not client.active:
        _reject(auditor, Forbidden("This client is not registered or no longer active."), "client_inactive")
    if PERSON_INFO_QUERY not in client.allowed_kinds:
        _reject(
            auditor,
            Forbidden(
                f"This client is not registered to query ('{PERSON_INFO_QUERY}' is not among its allowed kinds); "
                "ask the partnership's administrator to register it."
            ),
            "client_not_registered",
        )
    return client


def _read(body: QueryBody, auditor: Auditor) -> PersonQuery:
    if body.media_type not in MEDIA_TYPES:
        _reject(
            auditor,
            UnsupportedMediaType(f"Content-Type must be one of: {', '.join(sorted(MEDIA_TYPES))}."),
            "media_type",
            Outcome.FAILURE,
        )
    if body.content is None:
        _reject(
            auditor,
            PayloadTooLarge(f"A query may be at most {QUERY_MAX_BYTES} bytes: one Parameters with one Patient."),
            "too_large",
            Outcome.FAILURE,
        )
    try:
        query = parse_query(body.content, body.media_type)
    except UnanswerableQuery as error:
        _reject(auditor, ValidationFailed("The query cannot be answered.", errors=_details(error.issues)),
                "unanswerable", Outcome.FAILURE, error.issues)
    except AdapterError as error:
        _reject(auditor, InvalidPayload("The body is not a valid FHIR Parameters.", errors=_details(error.issues)),
                "invalid", Outcome.FAILURE, error.issues)
    if query.nhs_number is None and normalise_name(query.family_name) is None:
        issue = Issue("error", "value", f"{PATIENT_PATH}.name", "the family name must contain letters")
        _reject(auditor, ValidationFailed("The query cannot be answered.", errors=_details([issue])),
                "unanswerable", Outcome.FAILURE, [issue])
    return query


def _reject(
    auditor: Auditor,
    error: GatewayError,
    why: str,
    outcome: Outcome = Outcome.DENIED,
    issues: list[Issue] | tuple[Issue, ...] = (),
) -> NoReturn:
    # Issue locations are paths and codes are FHIR vocabulary; messages (which never echo a value) are not kept.
    detail: dict[str, Any] = {"reason_refused": why}
    if issues:
        detail["issues"] = sorted({f"{issue.code} {issue.location}" for issue in issues})
    raise auditor.refuse(error, AuditAction.CLIENT_PERSON_QUERY_REJECTED, outcome, detail=detail)


def _details(issues: list[Issue] | tuple[Issue, ...]) -> list[ErrorDetail]:
    return [ErrorDetail(location=issue.location, message=issue.message, code=issue.code) for issue in issues]


def _verdict_detail(query: PersonQuery, verdict: QueryVerdict) -> dict[str, Any]:
    return {"reason": query.reason, "decision": verdict.decision.value, "rule": verdict.rule_id}


def _terms(query: PersonQuery) -> tuple[str, tuple[SearchField, ...]]:
    """Return the normalised terms matched on, in the staff search's form (gateway.search.service), and their fields."""
    values: dict[SearchField, str | None]
    if query.nhs_number is not None:
        values = {SearchField.NHS_NUMBER: query.nhs_number}
    else:
        values = {
            SearchField.FAMILY_NAME: normalise_name(query.family_name),
            SearchField.GIVEN_NAME: normalise_name(query.given_name),
            SearchField.BIRTH_DATE: None if query.birth_date is None else query.birth_date.isoformat(),
        }
    given = {field: value for field, value in values.items() if value is not None}
    return "|".join(f"{field.value}={value}" for field, value in given.items()), tuple(given)


def _find(
    session: Session,
    principal: Principal,
    *,
    keyring: DataKeyring,
    query: PersonQuery,
    criteria: tuple[SearchField, ...],
) -> _Found:
    matches: Matches
    if query.nhs_number is not None:
        matches = match_nhs_number(session, keyring=keyring, nhs_number=query.nhs_number)
    else:
        person = Demographics(
            given=normalise_name(query.given_name) if SearchField.GIVEN_NAME in criteria else None,
            family=normalise_name(query.family_name),
            birth_date=query.birth_date,
        )
        # The search's standing: identities are compared and dropped; nothing of them is shown.
        matches = match_demographics(session, grant_for_search(principal), keyring=keyring, person=person)
    candidates = len(matches.children)
    if candidates != 1 or matches.limited:
        return _Found(None, candidates, matches.limited, [])
    child_id = next(iter(matches.children))
    return _Found(child_id, 1, False, repository.get_open_allocations(session, child_id=child_id))


def _refer(
    session: Session,
    client: Client,
    *,
    auditor: Auditor,
    query: PersonQuery,
    verdict: QueryVerdict,
    found: _Found,
    detail: dict[str, Any],
) -> dict[str, Any]:
    query_id = uuid.uuid4()
    if found.child_id is not None and found.allocations:
        repository.create_referrals(
            session,
            query_id=query_id,
            client_id=client.id,
            agency=client.agency,
            reason=query.reason,
            child_id=found.child_id,
            allocations=found.allocations,
        )
    auditor.record(
        AuditAction.CLIENT_PERSON_QUERY_REFERRED,
        Outcome.SUCCESS,
        child_id=found.child_id,
        policy_version=verdict.policy_version,
        detail={**detail, "query": str(query_id), "referred_to": [str(a.team_id) for a in found.allocations]},
    )
    return referred_answer(str(query_id), REFERRED)


# ---------------------------------------------------------------- the lead practitioner's queue

# Children Act sections a query may be made under, in words; keyed by normalise_reason's form.
CHILDREN_ACT_SECTIONS = {
    "http://legislation.gov.uk/ukpga/1989/41/section/17": "Children Act 1989, section 17: support for a child in need",
    "http://legislation.gov.uk/ukpga/1989/41/section/47": (
        "Children Act 1989, section 47: enquiry where a child may be suffering significant harm"
    ),
    "http://legislation.gov.uk/ukpga/2004/31/section/11": (
        "Children Act 2004, section 11: arrangements to safeguard and promote children's welfare"
    ),
}
_LISTED: dict[ReferralFilter, tuple[ReferralStatus, ...]] = {
    ReferralFilter.PENDING: (ReferralStatus.PENDING,),
    ReferralFilter.DECIDED: (ReferralStatus.CONTACT_SHARED, ReferralStatus.DECLINED),
}
_DECIDED_AS = {
    ReferralDecision.SHARE_CONTACT: ReferralStatus.CONTACT_SHARED,
    ReferralDecision.DECLINE: ReferralStatus.DECLINED,
}
NOTE_PART = "note"


def list_referrals(
    session: Session,
    principal: Principal,
    *,
    auditor: Auditor,
    keyring: DataKeyring,
    status: ReferralFilter | None,
    limit: int,
) -> PersonQueryReferralsRead:
    """Return the referred queries the caller may decide, newest first; audited with the ids shown."""
    rows = repository.get_decidable(
        session, principal, statuses=None if status is None else _LISTED[status], limit=limit
    )
    keys = _opened_keys(session, keyring, {row.referral.child_id for row in rows if row.referral.sealed_note})
    auditor.record(
        AuditAction.STAFF_PERSON_QUERIES_LISTED,
        Outcome.SUCCESS,
        detail={
            "status": None if status is None else status.value,
            "count": len(rows),
            "referrals": [str(row.referral.id) for row in rows],
            "children": sorted({str(row.referral.child_id) for row in rows}),
        },
    )
    return PersonQueryReferralsRead(referrals=[_referral_read(row, keys.get(row.referral.child_id)) for row in rows])


def decide_referral(
    session: Session,
    principal: Principal,
    *,
    auditor: Auditor,
    keyring: DataKeyring,
    referral_id: uuid.UUID,
    body: PersonQueryDecisionCreate,
) -> PersonQueryReferralRead:
    """Decide a referred query, once, as its case's lead practitioner; audited, the note sealed."""
    locked = repository.get_referral_for_update(session, referral_id=referral_id)
    rows = [] if locked is None else repository.get_decidable(
        session, principal, statuses=None, limit=1, referral_id=referral_id
    )
    if not rows:
        # Not found and not yours to decide look alike: a referral id reveals nothing.
        raise auditor.refuse(
            NotFound("No referred query with this id that you may decide."),
            AuditAction.STAFF_PERSON_QUERY_REFUSED,
            detail={"reason": "not_a_lead", "referral_id": str(referral_id)},
        )
    row = rows[0]
    referral = row.referral
    if referral.status is not ReferralStatus.PENDING:
        when = referral.decided_at.isoformat() if referral.decided_at else "an earlier time"
        raise Conflict(f"This referred query was already decided ({referral.status.value}) at {when}: it is decided once.")
    key: bytes | None = None
    if body.note is not None:
        try:
            key = keyring.unwrap(identity_repository.get_wrapped_data_keys(session, child_ids=[referral.child_id])[referral.child_id])
        except ChildErased as erased:
            raise auditor.refuse(
                erased,
                AuditAction.STAFF_PERSON_QUERY_REFUSED,
                child_id=referral.child_id,
                detail={"reason": "erased", "referral_id": str(referral.id)},
            ) from None
        referral.sealed_note = seal_value(
            key, body.note, str, context=PersonQueryReferral.context_for(referral.id, NOTE_PART)
        )
    referral.status = _DECIDED_AS[body.decision]
    referral.decided_by = principal.subject
    referral.decided_at = utcnow()
    session.flush()
    auditor.record(
        AuditAction.STAFF_PERSON_QUERY_DECIDED,
        Outcome.SUCCESS,
        child_id=referral.child_id,
        detail={
            "referral_id": str(referral.id),
            "query": str(referral.query_id),
            "client": referral.client_id,
            "agency": referral.agency.value,
            "reason": referral.reason,
            "decision": body.decision.value,
            "note": body.note is not None,  # whether one was given; never its text
        },
    )
    return _referral_read(row, None if key is None else OpenedKey(key))


def _opened_keys(session: Session, keyring: DataKeyring, child_ids: set[uuid.UUID]) -> dict[uuid.UUID, OpenedKey]:
    """Return the data keys of children whose referrals hold notes; an erased child's notes stay unread."""
    wrapped = identity_repository.get_wrapped_data_keys(session, child_ids=child_ids)
    return {child_id: OpenedKey(keyring.unwrap(key)) for child_id, key in wrapped.items() if key is not None}


def _referral_read(row: repository.DecidableReferral, key: OpenedKey | None) -> PersonQueryReferralRead:
    referral = row.referral
    decision = None
    if referral.status is not ReferralStatus.PENDING and referral.decided_by and referral.decided_at:
        note = None
        if referral.sealed_note is not None and key is not None:
            note = key.unseal_value(
                referral.sealed_note, str, context=PersonQueryReferral.context_for(referral.id, NOTE_PART)
            )
        decision = PersonQueryDecisionRead(
            decision=next(d for d, s in _DECIDED_AS.items() if s is referral.status),
            decided_by=referral.decided_by,
            decided_at=referral.decided_at,
            note=note,
        )
    return PersonQueryReferralRead(
        id=referral.id,
        reference=str(referral.query_id),
        client_id=referral.client_id,
        client_name=row.client_name,
        agency=referral.agency,
        reason=referral.reason,
        reason_label=CHILDREN_ACT_SECTIONS.get(normalise_reason(referral.reason)),
        asked_at=referral.created_at,
        child_id=referral.child_id,
        case_id=referral.case_id,
        team_id=referral.team_id,
        team_name=row.team_name,
        status=referral.status,
        decision=decision,
    )
