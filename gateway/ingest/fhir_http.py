"""FHIR's HTTP rules on the FHIR routes: which format each answer takes, what a client prefers back.

FHIR R4 http.html ("Content Types and encodings", "Managing Return Content"):
- the format: the `_format` query parameter, which wins, else the Accept header (a wildcard, such
  as the */* most HTTP libraries send unasked, takes JSON); without either, the format of the
  request's body (an XML push is answered in XML), else JSON. Every answer of a
  FHIR route takes it, errors included (this module's route class hands it to the error renderer).
  An Accept that names only formats the gateway cannot write, or a `_format` it does not know, is
  refused with 406, in JSON: the one answer it can then give.
- `Prefer: return=minimal | representation | OperationOutcome`: what a write answers with
  (adapters/nhs_fhir.py renders each); without it, an OperationOutcome, as before Prefer was read.

The answers are built as JSON-shaped data by the adapter; XML is written by adapters/fhir_xml.py.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from adapters import Adapter, Rendered
from adapters.fhir_xml import to_xml
from adapters.nhs_fhir import JSON_TYPES, XML_TYPES, RETURN_OUTCOME, ReturnPreference
from gateway.kit.errors import GatewayError, MethodNotAllowed

from .http import adapter_error_renderer, media_type_of


class NotAcceptable(GatewayError):
    """The client accepts no format the gateway can write (406)."""

    status, title, fhir_code = 406, "Not acceptable", "not-supported"


@dataclass(frozen=True)
class ResponseFormat:
    """The format of an answer: XML or JSON, and the media type its Content-Type names."""

    xml: bool
    media_type: str


FHIR_JSON = ResponseFormat(xml=False, media_type="application/fhir+json")
FHIR_XML = ResponseFormat(xml=True, media_type="application/fhir+xml")

# What a client may name, in _format or Accept, and the answer's format. A generic JSON or XML
# type is answered with that type, so that a client that accepts only it is not refused.
_NAMED: dict[str, ResponseFormat] = {
    "json": FHIR_JSON,
    "xml": FHIR_XML,
    **{media_type: FHIR_JSON for media_type in JSON_TYPES},
    **{media_type: FHIR_XML for media_type in XML_TYPES},
    "application/json": ResponseFormat(xml=False, media_type="application/json"),
    "application/xml": ResponseFormat(xml=True, media_type="application/xml"),
    "text/xml": ResponseFormat(xml=True, media_type="text/xml"),
}
_FORMATS_ACCEPTED = "application/fhir+json or application/fhir+xml (or _format=json, _format=xml)"


def negotiate(request: Request) -> ResponseFormat:
    """Return the format to answer a FHIR request in; raise NotAcceptable when there is none the client takes."""
    default = FHIR_XML if media_type_of(request.headers.get("content-type"), "") in XML_TYPES else FHIR_JSON
    named = request.query_params.get("_format")
    if named is not None:
        # A "+" left unencoded in a query string reads as a space: application/fhir+xml arrives as "fhir xml".
        chosen = _NAMED.get(named.strip().lower().replace(" ", "+"))
        if chosen is None:
            raise NotAcceptable(f"_format must name {_FORMATS_ACCEPTED}.")
        return chosen
    accept = ",".join(request.headers.getlist("accept")).strip()
    if not accept:
        return default
    for media_range, parameters in _ranges(accept):
        version = parameters.get("fhirversion")
        if version is not None and version not in ("4.0", "4.0.1"):
            continue  # another FHIR version than the one this server speaks
        if media_range in _NAMED:
            return _NAMED[media_range]
        if media_range in ("*/*", "application/*"):
            # Any format will do (most HTTP libraries send */* unasked): the server's own, JSON.
            return FHIR_JSON
        if media_range == "text/*":
            return _NAMED["text/xml"]
    raise NotAcceptable(f"The Accept header names no format this server can answer in: accept {_FORMATS_ACCEPTED}.")


def _ranges(accept: str) -> list[tuple[str, dict[str, str]]]:
    """Return an Accept header's media ranges the client takes at all, most preferred first (RFC 9110 §12.5.1)."""
    ranked: list[tuple[float, int, str, dict[str, str]]] = []
    for position, part in enumerate(accept.split(",")):
        media_range, *raw_parameters = (piece.strip() for piece in part.split(";"))
        parameters: dict[str, str] = {}
        for raw in raw_parameters:
            name, _, value = raw.partition("=")
            parameters[name.strip().lower()] = value.strip().strip('"')
        try:
            weight = float(parameters.pop("q", "1"))
        except ValueError:
            weight = 0.0  # an unreadable weight: not a range the client asked for
        if media_range and weight > 0:
            ranked.append((-weight, position, media_range.lower(), parameters))
    return [(media_range, parameters) for _weight, _position, media_range, parameters in sorted(ranked)]


_PREFER_RETURN = re.compile(r"(?:^|[,;])\s*return\s*=\s*\"?([A-Za-z]+)\"?", re.IGNORECASE)
_RETURNS: dict[str, ReturnPreference] = {
    "minimal": "minimal",
    "representation": "representation",
    "operationoutcome": "OperationOutcome",
}


def return_preference(request: Request) -> ReturnPreference | None:
    """Return what the Prefer header asks a write to answer with (RFC 7240, FHIR's return=); None if it asks nothing."""
    for header in request.headers.getlist("prefer"):
        found = _PREFER_RETURN.search(header)
        if found and found[1].lower() in _RETURNS:
            return _RETURNS[found[1].lower()]
    return None  # an unknown preference is ignored, as RFC 7240 says


def respond(rendered: Rendered, answer_format: ResponseFormat, headers: Mapping[str, str] | None = None) -> Response:
    """Return a rendered FHIR answer as an HTTP response in the format negotiated."""
    all_headers = {**(headers or {}), **rendered.headers}
    if answer_format.xml:
        return Response(
            to_xml(rendered.body), status_code=rendered.status_code, media_type=answer_format.media_type,
            headers=all_headers,
        )
    return JSONResponse(
        rendered.body, status_code=rendered.status_code, media_type=answer_format.media_type, headers=all_headers
    )


@dataclass(frozen=True)
class FhirAnswer:
    """How to answer one FHIR request: its format and what the client prefers a write to return."""

    format: ResponseFormat
    asked: ReturnPreference | None

    @property
    def prefer(self) -> ReturnPreference:
        """Return the return preference to render with: the client's, else an OperationOutcome."""
        return self.asked or RETURN_OUTCOME

    def read(self, rendered: Rendered) -> Response:
        """Answer with a resource that no preference shapes (the CapabilityStatement)."""
        return respond(rendered, self.format)

    def bundle(self, rendered: Rendered) -> Response:
        """Answer with a response Bundle (whose entries `prefer` shaped)."""
        return respond(rendered, self.format, self._applied())

    def write(self, rendered: Rendered, *, minimal_status: int | None = None) -> Response:
        """Answer a write of one resource: with no body when the client prefers minimal (status `minimal_status`, if given)."""
        if self.asked != "minimal":
            return respond(rendered, self.format, self._applied())
        return Response(
            status_code=minimal_status or rendered.status_code, headers={**self._applied(), **rendered.headers}
        )

    def _applied(self) -> dict[str, str]:
        return {"Preference-Applied": f"return={self.asked}"} if self.asked else {}


def fhir_answer(request: Request) -> FhirAnswer:
    """Return how to answer this request (the route class has already refused one it cannot answer)."""
    return FhirAnswer(negotiate(request), return_preference(request))


Answer = Annotated[FhirAnswer, Depends(fhir_answer)]

# The format the FHIR route being handled answers in, for its error renderer, which is handed only
# the error. Set around the route's handling, where the app's error handlers run for its errors.
_ANSWER_FORMAT: ContextVar[ResponseFormat] = ContextVar("fhir_answer_format", default=FHIR_JSON)


def _respond_negotiated(rendered: Rendered, headers: Mapping[str, str]) -> Response:
    return respond(rendered, _ANSWER_FORMAT.get(), headers)


def fhir_route(adapter: Adapter, name: str) -> type[APIRoute]:
    """Return the route class of FHIR routes: each answer, errors included, in the format the request negotiates."""
    render_error = adapter_error_renderer(adapter, respond_with=_respond_negotiated)

    async def handle(self: APIRoute, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            chosen = negotiate(Request(scope))
        except NotAcceptable as error:
            await render_error(error)(scope, receive, send)  # in JSON: the client named nothing we write
            return
        token = _ANSWER_FORMAT.set(chosen)
        try:
            await APIRoute.handle(self, scope, receive, send)
        except StarletteHTTPException as exc:
            # A wrong method is refused by the route itself, outside the app's error handlers' reach
            # of this format: answer it here, as those handlers would, in the negotiated format.
            if exc.status_code != 405:
                raise
            refusal = MethodNotAllowed("This address does not accept that method.", headers=exc.headers)
            await render_error(refusal)(scope, receive, send)
        finally:
            _ANSWER_FORMAT.reset(token)

    return type(name, (APIRoute,), {"error_renderer": staticmethod(render_error), "handle": handle})
