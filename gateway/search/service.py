"""Find a child: by NHS number, or by at least two of name, birth date and postcode.

The terms are checked as the adapters check them (the NHS number's Modulus 11 digit, a UK
postcode) and normalised as linking normalises them; matching is linking's own
(`gateway.identity.matching`, where what counts as a match is explained). Of the children
found, the caller sees only those the access query opens to them, each shown by its own
records; the others are only counted, with whom to ask for allocation.

The search is audited (`staff:search:performed`) with the names of the fields given and a keyed
hash of the normalised terms, so that IG can tell two searches for the same terms apart from
others without the trail holding a name, a birth date or a number. Nothing personal goes into
logs or spans either: only field names and counts.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from opentelemetry import trace
from sqlalchemy.orm import Session
from stdnum.gb import nhs

from audit import AuditAction, Outcome
from gateway.auth.principal import Principal
from gateway.cases import repository as cases_repository
from gateway.identity import repository as identity_repository
from gateway.identity.authority import grant_for_search
from gateway.identity.matching import Matches, SearchField, match_demographics, match_nhs_number
from gateway.identity.scoring import Demographics, normalise_name
from gateway.identity.service import get_linked_identities, read_claim
from gateway.kit.auditor import Auditor
from gateway.kit.crypto import DataKeyring
from gateway.kit.errors import ErrorDetail, ValidationFailed

from . import repository
from .schemas import ChildDisplayRead, ChildFoundRead, ChildSearch, ChildSearchRead

tracer = trace.get_tracer("gateway.search")

# The scheme under which the terms are hashed for the audit trail (never an identifier's scheme).
TERMS_SCHEME = "search"
# The fields that count towards the two a demographic search needs (the name is the surname,
# with the given name if known).
COUNTED = (SearchField.FAMILY_NAME, SearchField.BIRTH_DATE, SearchField.POSTCODE)
NEEDED = "an nhs_number alone, or at least two of family_name (with given_name if known), birth_date and postcode"
HOW_TO_ASK = (
    "{others} matched that you may not open. To see a child's records, ask your MACPT team manager or the lead "
    "practitioner to open a case for the child and allocate it to your team, or to add you to the team it is "
    "allocated to. This search has been recorded."
)
# Birth dates are days in England: "in the future" is after today there.
_ENGLAND = ZoneInfo("Europe/London")
# A UK postcode, spaces removed: the police adapter's pattern (adapters/police.py), GIR 0AA included.
_POSTCODE = re.compile(r"^(?:[A-Z]{1,2}[0-9][A-Z0-9]?[0-9][A-Z]{2}|GIR0AA)$")


@dataclass(frozen=True)
class Terms:
    """A search's terms, checked and normalised: the fields given, and what is matched on."""

    criteria: tuple[SearchField, ...]
    nhs_number: str | None
    person: Demographics
    canonical: str  # the normalised terms as one string: hashed into the audit, never kept


def search(
    session: Session, principal: Principal, *, auditor: Auditor, keyring: DataKeyring, body: ChildSearch
) -> ChildSearchRead:
    """Return the children the terms find that the caller may open, and how many others (audited)."""
    terms = check_terms(body)
    with tracer.start_as_current_span("search") as span:
        span.set_attribute("gateway.search.criteria", [field.value for field in terms.criteria])
        matches = _match(session, principal, keyring=keyring, terms=terms)
        accessible = repository.get_accessible_child_ids(session, principal, child_ids=matches.children.keys())
        found = _show(session, principal, keyring=keyring, matches=matches, accessible=accessible)
        others = len(matches.children) - len(found)
        span.set_attribute("gateway.search.results", len(found))
        span.set_attribute("gateway.search.others_matched", others)
        auditor.record(
            AuditAction.STAFF_SEARCH_PERFORMED,
            Outcome.SUCCESS,
            detail={
                "criteria": [field.value for field in terms.criteria],
                "terms": keyring.blind_index(TERMS_SCHEME, terms.canonical),
                "results": len(found),
                "others_matched": others,
                "children": [str(child.child_id) for child in found],
                "limited": matches.limited,
            },
        )
        return ChildSearchRead(
            children=found,
            others_matched=others,
            how_to_ask=None if others == 0 else HOW_TO_ASK.format(others=_children(others)),
            limited=matches.limited,
        )


def check_terms(body: ChildSearch) -> Terms:
    """Check and normalise a search's terms; refuse (422, naming the field) what cannot be searched."""
    errors: list[ErrorDetail] = []
    family = _name(body.family_name, SearchField.FAMILY_NAME, errors)
    given = _name(body.given_name, SearchField.GIVEN_NAME, errors)
    postcode = _postcode(body.postcode, errors)
    if body.birth_date is not None and body.birth_date > datetime.now(_ENGLAND).date():
        errors.append(_error(SearchField.BIRTH_DATE, "birth_date must not be in the future"))
    nhs_number = None if body.nhs_number is None else _nhs_number(body.nhs_number, errors)
    _refuse_if(errors)
    values: dict[SearchField, str | None] = {
        SearchField.NHS_NUMBER: nhs_number,
        SearchField.FAMILY_NAME: family,
        SearchField.GIVEN_NAME: given,
        SearchField.BIRTH_DATE: None if body.birth_date is None else body.birth_date.isoformat(),
        SearchField.POSTCODE: None if postcode is None else postcode.replace(" ", ""),
    }
    criteria = tuple(field for field, value in values.items() if value is not None)
    if nhs_number is not None and len(criteria) > 1:
        others = ", ".join(field.value for field in criteria if field is not SearchField.NHS_NUMBER)
        _refuse_if([
            _error(
                SearchField.NHS_NUMBER,
                f"nhs_number is searched alone: send it without {others}, or search by those without it",
            )
        ])
    counted = [field for field in COUNTED if field in criteria]
    if nhs_number is None and len(counted) < 2:
        given_only = " (given_name counts only with family_name)" if given is not None and family is None else ""
        gave = ", ".join(field.value for field in criteria) or "nothing"
        _refuse_if([ErrorDetail(location="body", message=f"search by {NEEDED}; this search gave {gave}{given_only}")])
    person = Demographics(given=given, family=family, birth_date=body.birth_date, postcode=postcode)
    canonical = "|".join(f"{field.value}={value}" for field, value in values.items() if value is not None)
    return Terms(criteria=criteria, nhs_number=nhs_number, person=person, canonical=canonical)


def _error(field: SearchField, message: str) -> ErrorDetail:
    return ErrorDetail(location=f"body.{field.value}", message=message)


def _refuse_if(errors: list[ErrorDetail]) -> None:
    if errors:
        # Each message names its field and never repeats the value sent.
        raise ValidationFailed("; ".join(error.message for error in errors) + ".", errors=errors)


def _name(value: str | None, field: SearchField, errors: list[ErrorDetail]) -> str | None:
    if value is None:
        return None
    normal = normalise_name(value)
    if normal is None:
        errors.append(_error(field, f"{field.value} must contain letters"))
    return normal


def _postcode(value: str | None, errors: list[ErrorDetail]) -> str | None:
    if value is None:
        return None
    compact = "".join(value.split()).upper()
    if not _POSTCODE.match(compact):
        errors.append(_error(SearchField.POSTCODE, "postcode is not a UK postcode (e.g. ZZ99 3VZ)"))
        return None
    return f"{compact[:-3]} {compact[-3:]}"


def _nhs_number(value: str, errors: list[ErrorDetail]) -> str | None:
    compact = str(nhs.compact(value))
    if not nhs.is_valid(compact):
        # The adapters' words for the same check (adapters/police.py, nhs_fhir.py).
        errors.append(
            _error(
                SearchField.NHS_NUMBER,
                "nhs_number is not a valid NHS number: it must be 10 digits with a correct Modulus 11 check digit",
            )
        )
        return None
    return compact


def _match(session: Session, principal: Principal, *, keyring: DataKeyring, terms: Terms) -> Matches:
    if terms.nhs_number is not None:
        return match_nhs_number(session, keyring=keyring, nhs_number=terms.nhs_number)
    return match_demographics(session, grant_for_search(principal), keyring=keyring, person=terms.person)


def _show(
    session: Session, principal: Principal, *, keyring: DataKeyring, matches: Matches, accessible: set[uuid.UUID]
) -> list[ChildFoundRead]:
    """Describe each found child the caller may open, by its own records opened with the caller's access."""
    wrapped = identity_repository.get_wrapped_data_keys(session, child_ids=accessible)
    found: list[ChildFoundRead] = []
    for child_id in sorted(accessible, key=str):
        access = cases_repository.get_child_access(session, principal, child_id=child_id)
        wrapped_key = wrapped.get(child_id)
        if access is None or wrapped_key is None:  # closed or erased since the match: not shown
            continue
        data_key = keyring.unwrap(wrapped_key)
        claims = [read_claim(data_key, identity) for identity in reversed(get_linked_identities(session, access))]
        fields = matches.children[child_id]
        found.append(
            ChildFoundRead(
                child_id=child_id,
                match="nhs_number" if fields == (SearchField.NHS_NUMBER,) else "demographics",
                fields_matched=[field.value for field in fields],
                display=ChildDisplayRead(
                    family_name=next((c.family_name for c in claims if c.family_name), None),
                    given_names=next((list(c.given_names) for c in claims if c.given_names), []),
                    birth_date=next((c.birth_date for c in claims if c.birth_date is not None), None),
                ),
            )
        )
    return sorted(found, key=_display_order)


def _display_order(child: ChildFoundRead) -> tuple[str, str, date, str]:
    display = child.display
    return (
        (display.family_name or "").casefold(),
        " ".join(display.given_names).casefold(),
        display.birth_date or date.min,
        str(child.child_id),
    )


def _children(count: int) -> str:
    return "1 other child" if count == 1 else f"{count} other children"
