"""Every UK Core R4 example (public test material, ../shared/conformance) pushed as an NHS system would.

As XML: each Patient first, by PUT, then every other example in batch Bundles, one Bundle per
resource type, each entry a PUT of the example as published. None may get a 5xx; each is accepted
or refused with a specific OperationOutcome (a code, an element and words); the tally by resource
type is printed. The records about a Patient that was accepted appear in that child's view.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B import get_fhir_model_class
from httpx import Response
from lxml import etree
from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.auth.keys import SigningKeys
from gateway.demo.loader import HEALTH_KINDS
from gateway.kit.crypto import DataKeyring
from gateway.models import Item
from gateway.settings import Settings
from policies import RecordKind, RecordStatus
from tests.factories import add_member, allocate, client_token, make_client, make_team, staff_token
from tests.gateway.helpers import child_id_for, get_view

CONFORMANCE = Path(__file__).resolve().parents[4] / "shared" / "conformance" / "ukcore-r4-examples"
FHIR_XML = "application/fhir+xml"
RICHARD_SMITH = "Patient/UKCore-Patient-RichardSmith-Example"
RICHARD_SMITH_NHS_NUMBER = "9912003888"

pytestmark = pytest.mark.skipif(not CONFORMANCE.is_dir(), reason="../shared/conformance is not present")


def _read(response: Response) -> dict[str, Any]:
    """A FHIR response body as JSON-shaped data, whichever format the server answered in."""
    media_type = response.headers["content-type"].split(";")[0]
    if media_type.endswith("xml"):
        root = etree.QName(etree.fromstring(response.content)).localname
        model = get_fhir_model_class(root).model_validate_xml(response.content)
        data: dict[str, Any] = model.model_dump(mode="json", exclude_none=True)
        return data
    assert media_type == "application/fhir+json", media_type
    parsed: dict[str, Any] = response.json()
    return parsed


def _resource_xml(path: Path) -> tuple[str, str, str]:
    """The example's type, id and XML without its declaration (to sit inside a Bundle entry)."""
    text = re.sub(r"^\s*<\?xml[^>]*\?>\s*", "", path.read_text(encoding="utf-8"))
    root = etree.fromstring(text.encode())
    resource_type = etree.QName(root).localname
    id_element = root.find("{http://hl7.org/fhir}id")
    assert id_element is not None, path.name
    return resource_type, str(id_element.get("value")), text


def _batch(entries: list[tuple[str, str, str]]) -> bytes:
    parts = [
        f'<entry><resource>{xml}</resource><request><method value="PUT"/><url value="{t}/{i}"/></request></entry>'
        for t, i, xml in entries
    ]
    return f'<Bundle xmlns="http://hl7.org/fhir"><type value="batch"/>{"".join(parts)}</Bundle>'.encode()


def _specific(outcome: dict[str, Any]) -> bool:
    """An OperationOutcome that says what was wrong: an error with a code and words, and where when it can."""
    issues = outcome.get("issue") or []
    return outcome.get("resourceType") == "OperationOutcome" and any(
        issue.get("severity") == "error" and issue.get("code") and issue.get("diagnostics") for issue in issues
    )


def test_every_uk_core_example_is_accepted_or_refused_specifically_and_shown_in_its_childs_view(
    client: TestClient,
    session: Session,
    settings: Settings,
    signing_keys: SigningKeys,
    keyring: DataKeyring,
    capsys: pytest.CaptureFixture[str],
) -> None:
    trust, _key = make_client(session, kinds=tuple(str(kind) for kind in [*HEALTH_KINDS, RecordKind.CONSENT]))
    headers = {"Content-Type": FHIR_XML, "Accept": FHIR_XML, "Authorization": f"Bearer {client_token(signing_keys, settings, trust)}"}
    tally: dict[str, Counter[str]] = defaultdict(Counter)
    accepted_about: dict[str, list[str]] = defaultdict(list)  # Patient reference → source record ids

    examples = sorted(CONFORMANCE.glob("*.xml"))
    assert len(examples) == 142
    by_type: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    bundles = []
    for path in examples:
        resource_type, resource_id, xml = _resource_xml(path)
        if resource_type == "Bundle":
            bundles.append(path)
        else:
            by_type[resource_type].append((resource_type, resource_id, xml))

    # Patients first, one PUT each, as a PAS or GP system would.
    for _type, resource_id, xml in by_type.pop("Patient"):
        response = client.put(f"/fhir/R4/Patient/{resource_id}", content=xml.encode(), headers=headers)
        assert response.status_code < 500, response.text
        assert response.headers["content-type"].startswith(FHIR_XML)  # an XML client gets XML back
        if response.status_code in (200, 201):
            tally["Patient"]["accepted"] += 1
        else:
            outcome = _read(response)
            assert _specific(outcome), response.text
            codes = sorted({issue["code"] for issue in outcome["issue"]})
            tally["Patient"][f"refused ({', '.join(codes)})"] += 1

    # Then the rest, a batch Bundle per resource type: each entry stands or falls alone.
    for resource_type, entries in sorted(by_type.items()):
        response = client.post("/fhir/R4", content=_batch(entries), headers=headers)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith(FHIR_XML)
        answer = _read(response)
        assert answer["type"] == "batch-response" and len(answer["entry"]) == len(entries)
        for (_type, resource_id, xml), entry in zip(entries, answer["entry"], strict=True):
            status = entry["response"]["status"]
            assert not status.startswith("5"), (resource_type, resource_id, status)
            if status.startswith(("200", "201")):
                tally[resource_type]["accepted"] += 1
                for reference in set(re.findall(r'<reference value="(Patient/[^"]+)"', xml)):
                    accepted_about[reference].append(f"{resource_type}/{resource_id}")
            else:
                assert _specific(entry["response"]["outcome"]), (resource_type, resource_id, entry)
                codes = sorted({issue["code"] for issue in entry["response"]["outcome"]["issue"]})
                tally[resource_type][f"refused ({', '.join(codes)})"] += 1

    # The published Bundles as they are: a batch is read entry by entry; a document, a message or a
    # searchset is not a push, and is refused whole.
    for path in bundles:
        name = f"Bundle {path.name.removeprefix('UKCore-Bundle-').removesuffix('-Example.xml')}"
        response = client.post("/fhir/R4", content=path.read_bytes(), headers=headers)
        assert response.status_code < 500, (path.name, response.text)
        answer = _read(response)
        if response.status_code == 200:
            for entry in answer["entry"]:
                outcome = entry["response"]
                kind = "accepted" if outcome["status"].startswith(("200", "201")) else "refused"
                assert kind == "accepted" or _specific(outcome["outcome"]), (path.name, outcome)
                tally[name][kind] += 1
        else:
            assert _specific(answer), (path.name, answer)
            codes = sorted({issue["code"] for issue in answer["issue"]})
            tally[name][f"refused whole ({', '.join(codes)})"] += 1

    with capsys.disabled():
        print("\nUK Core R4 examples pushed as XML, by resource type:")
        for resource_type in sorted(tally):
            print(f"  {resource_type:28} " + ", ".join(f"{what}: {n}" for what, n in sorted(tally[resource_type].items())))
        total = Counter[str]()
        for counts in tally.values():
            for what, n in counts.items():
                total["accepted" if what == "accepted" else "refused"] += n
        print(f"  {'total':28} accepted: {total['accepted']}, refused: {total['refused']}")

    # What a safeguarding team most needs was accepted.
    for needed in ("Encounter", "Condition", "Observation", "Flag", "CareTeam", "RelatedPerson", "EpisodeOfCare",
                   "Appointment", "Immunization", "AllergyIntolerance", "MedicationStatement", "MedicationRequest",
                   "Procedure", "DocumentReference", "QuestionnaireResponse"):
        assert tally[needed]["accepted"] >= 1, needed
    # Nothing about no child was stored: Practitioners, Organizations and Locations are refused.
    for refused in ("Practitioner", "Organization", "Location"):
        assert tally[refused]["accepted"] == 0 and sum(tally[refused].values()) >= 1

    # Every record accepted about Richard Smith is in his child's view (disclosed, or withheld and
    # said so), except those the source marked entered in error.
    child_id = child_id_for(session, keyring, RICHARD_SMITH_NHS_NUMBER)
    team = make_team(session)
    member = add_member(session, team, agency="health", role="health_practitioner")
    allocate(session, child_id=child_id, team=team)
    view = get_view(client, staff_token(signing_keys, settings, member), child_id)
    assert view.status_code == 200, view.text
    body = view.json()
    shown = {entry["item_id"] for entry in body["timeline"]}
    shown |= {item_id for withheld in body["withheld"] for item_id in withheld["item_ids"]}
    rows = session.execute(
        select(Item.id, Item.source_record_id, Item.status).where(Item.child_id == child_id, Item.client_id == trust.id)
    ).all()
    in_force = {str(row.id): row.source_record_id for row in rows if row.status is RecordStatus.CURRENT}
    retracted = {row.source_record_id for row in rows if row.status is RecordStatus.ENTERED_IN_ERROR}
    expected = set(accepted_about[RICHARD_SMITH]) - retracted
    assert len(expected) >= 60
    assert {in_force[item_id] for item_id in shown if item_id in in_force} >= expected
    assert "AllergyIntolerance/UKCore-AllergyIntolerance-EnteredInError-Example" in retracted
