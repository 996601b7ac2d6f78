"""Spans exist per request and per stage, and carry no personal data."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy.orm import Session

from audit import AuditAction
from gateway.auth.keys import SigningKeys
from gateway.kit.crypto import DataKeyring
from gateway.settings import Settings
from tests.factories import add_member, allocate, child_bundle, client_token, demo_child, encounter, make_client
from tests.factories import make_team, staff_token
from tests.gateway.helpers import child_id_for, last_event, push


def test_spans_cover_the_stages_without_personal_data(
    client: TestClient,
    session: Session,
    settings: Settings,
    signing_keys: SigningKeys,
    keyring: DataKeyring,
    span_exporter: InMemorySpanExporter,
) -> None:
    span_exporter.clear()
    source, _ = make_client(session)
    child = demo_child(family_name="Traceable", given_names=["Spanna"])
    push(client, client_token(signing_keys, settings, source), child_bundle(child, encounters=[encounter()]))
    child_id = child_id_for(session, keyring, child.nhs_number)
    team = make_team(session)
    member = add_member(session, team, agency="health", role="designated_nurse")
    allocate(session, child_id=child_id, team=team)
    client.get(
        f"/api/v1/children/{child_id}/view?purpose=child_protection",
        headers={"Authorization": f"Bearer {staff_token(signing_keys, settings, member)}"},
    )

    spans = span_exporter.get_finished_spans()
    names = {span.name for span in spans}
    assert {"ingest", "link", "view", "decide", "audit", "POST /fhir/R4"} <= names
    assert "GET /api/v1/children/{child_id}/view" in names
    rendered = json.dumps([{"name": s.name, "attributes": dict(s.attributes or {})} for s in spans])
    for personal in (child.nhs_number, "Traceable", "Spanna", str(child_id), "ZZ99"):
        assert personal not in rendered


def test_spans_are_exported_only_when_an_endpoint_is_configured() -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    from gateway.kit.telemetry import build_tracer_provider

    def exporters(provider: TracerProvider) -> list[object]:
        # The SDK keeps its processors privately; this is the one way to see where spans go.
        return [getattr(p, "span_exporter", None) for p in provider._active_span_processor._span_processors]

    silent = build_tracer_provider(Settings(otlp_endpoint=None))
    exporting = build_tracer_provider(Settings(otlp_endpoint="http://127.0.0.1:4318/v1/traces"))

    assert exporters(silent) == []
    assert [type(e) for e in exporters(exporting)] == [OTLPSpanExporter]
    exporting.shutdown()


def test_an_event_names_its_trace_and_the_trace_names_its_events(
    client: TestClient,
    session: Session,
    settings: Settings,
    signing_keys: SigningKeys,
    span_exporter: InMemorySpanExporter,
) -> None:
    """An on-call engineer goes from a trace to its audit events and back, by ids alone."""
    span_exporter.clear()
    source, _ = make_client(session)
    push(client, client_token(signing_keys, settings, source), child_bundle(demo_child(), encounters=[encounter()]))

    event = last_event(session, AuditAction.CLIENT_RECORDS_PUSHED.value)
    [request_span] = [s for s in span_exporter.get_finished_spans() if s.name == "POST /fhir/R4"]
    assert event.trace_id == format(request_span.context.trace_id, "032x")
    carrying = [s for s in span_exporter.get_finished_spans() if "gateway.audit.seqs" in (s.attributes or {})]
    assert carrying and all(s.context.trace_id == request_span.context.trace_id for s in carrying)
    seqs = {seq for s in carrying for seq in _int_sequence((s.attributes or {})["gateway.audit.seqs"])}
    assert event.seq in seqs


def _int_sequence(value: object) -> list[int]:
    assert isinstance(value, tuple | list) and all(isinstance(v, int) for v in value), value
    return [int(v) for v in value]
