"""OpenTelemetry: a span per request and per stage, exported over OTLP only when configured.

Span attributes carry route templates, methods, statuses and counts: never a child id in a
URL, a name, an NHS number or a query string.
"""

from __future__ import annotations

import uuid

from fastapi import FastAPI, Request, Response
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import ProxyTracerProvider, SpanKind, Status, StatusCode
from starlette.routing import compile_path

from gateway.settings import Settings


def build_tracer_provider(settings: Settings) -> TracerProvider:
    """Build a tracer provider that exports over OTLP only when an endpoint is configured."""
    provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
    if settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint)))
    return provider


def configure_tracing(settings: Settings) -> None:
    """Install the process's tracer provider once (a provider already set is left alone)."""
    if isinstance(trace.get_tracer_provider(), ProxyTracerProvider):
        trace.set_tracer_provider(build_tracer_provider(settings))


def route_template(request: Request) -> str:
    """Return the route template a request matched (e.g. /api/v1/children/{child_id}/view).

    Matched against the app's own OpenAPI paths rather than FastAPI's internal route objects,
    whose shape changes between versions.
    """
    templates = getattr(request.app.state, "route_templates", None)
    if templates is None:
        templates = [(compile_path(t)[0], t) for t in request.app.openapi()["paths"]]
        request.app.state.route_templates = templates
    path = request.url.path
    return next((template for regex, template in templates if regex.match(path)), "unmatched")


def install_request_spans(app: FastAPI) -> None:
    """Open a server span per request, named by route template.

    Written here rather than with opentelemetry-instrumentation-fastapi because that records
    the raw URL path and query (which hold child ids and purposes) in span attributes.
    """
    tracer = trace.get_tracer("gateway.http")

    @app.middleware("http")
    async def _span_per_request(request: Request, call_next) -> Response:  # type: ignore[no-untyped-def]
        request.state.request_id = str(uuid.uuid4())
        with tracer.start_as_current_span(f"{request.method} request", kind=SpanKind.SERVER) as span:
            span.set_attribute("http.request.method", request.method)
            response = await call_next(request)
            route = route_template(request)
            span.update_name(f"{request.method} {route}")
            span.set_attribute("http.route", route)
            span.set_attribute("http.response.status_code", response.status_code)
            span.set_attribute("gateway.request_id", request.state.request_id)
            if response.status_code >= 500:
                span.set_status(Status(StatusCode.ERROR))
        response.headers["X-Request-Id"] = request.state.request_id
        return response
