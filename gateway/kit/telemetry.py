"""OpenTelemetry: a span per request and per stage, exported over OTLP only when configured.

Span attributes carry route templates, methods, statuses and counts: never a child id in a
URL, a name, an NHS number or a query string.
"""

from __future__ import annotations

import logging
import uuid

from fastapi import Request
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import ProxyTracerProvider, SpanKind, Status, StatusCode
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.settings import Settings

from .errors import InternalError, render

log = logging.getLogger(__name__)


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


SECURITY_HEADERS = (
    # Every answer may hold personal data or a token: no cache may keep it, no browser may sniff it.
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
)


class RequestMiddleware:
    """Per request: an id, a server span named by route template, safe headers, and no tracebacks.

    Written as plain ASGI rather than with opentelemetry-instrumentation-fastapi, because that
    records the raw URL path and query (which hold child ids and purposes) in span attributes.
    An exception nothing else handled becomes a 500 in the matched route's format here, logged
    as its type only: a traceback may quote a submitted value.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.tracer = trace.get_tracer("gateway.http")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = str(uuid.uuid4())
        scope.setdefault("state", {})["request_id"] = request_id
        request = Request(scope)
        status = 500
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"]
                headers += [*SECURITY_HEADERS, (b"x-request-id", request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        with self.tracer.start_as_current_span(f"{scope['method']} request", kind=SpanKind.SERVER) as span:
            span.set_attribute("http.request.method", scope["method"])
            span.set_attribute("gateway.request_id", request_id)
            try:
                await self.app(scope, receive, send_with_headers)
            except Exception as exc:
                log.error(
                    "unhandled error",
                    extra={"request_id": request_id, "path_template": route_template(request),
                           "event": type(exc).__name__},
                )
                span.set_status(Status(StatusCode.ERROR))
                if started:
                    raise  # the response is half sent; the server can only close the connection
                error = InternalError("The gateway failed; nothing from this request was stored.")
                await render(request, error)(scope, receive, send_with_headers)
            route = route_template(request)
            span.update_name(f"{scope['method']} {route}")
            span.set_attribute("http.route", route)
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
