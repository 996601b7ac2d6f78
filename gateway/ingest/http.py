"""HTTP glue every adapter's routes share: the bounded body, and errors in the adapter's format."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.responses import Response

from adapters import Adapter, AdapterError, Issue, Rendered, TooManyEntries
from gateway.kit.context import get_settings
from gateway.kit.errors import ErrorDetail, GatewayError, InvalidPayload, PayloadTooLarge, Renderer, UnsupportedMediaType


@dataclass(frozen=True)
class PushBody:
    """A push's bytes, read up to the limit, and the media type they claim to be."""

    media_type: str
    content: bytes


def media_type_of(content_type: str | None, default: str) -> str:
    """Return the bare media type of a Content-Type header (parameters dropped, lower case)."""
    return (content_type or default).split(";", 1)[0].strip().lower()


def body_reader(adapter: Adapter, *, default_media_type: str) -> Callable[[Request], Coroutine[None, None, PushBody]]:
    """Return a dependency that checks the Content-Type, then reads the body, stopping at the limit."""

    async def read_body(request: Request) -> PushBody:
        media_type = media_type_of(request.headers.get("content-type"), default_media_type)
        if media_type not in adapter.media_types:
            raise UnsupportedMediaType(f"Content-Type must be one of: {', '.join(sorted(adapter.media_types))}.")
        limit = (await get_settings(request)).max_body_bytes
        content = await read_limited(request, limit)
        if content is None:
            raise PayloadTooLarge(f"A push may be at most {limit} bytes; split it into smaller pushes.")
        return PushBody(media_type, content)

    return read_body


async def read_limited(request: Request, limit: int) -> bytes | None:
    """Return a request's body, or None when it is larger than `limit` bytes (then read no further).

    A declared Content-Length over the limit is refused before a byte is read; a body without
    one (chunked) is read until it passes the limit, never holding more than that in memory.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def adapter_failure(error: AdapterError) -> GatewayError:
    """Turn an adapter's refusal of a whole payload into the HTTP error that says so."""
    details = [ErrorDetail(location=i.location, message=i.message, code=i.code) for i in error.issues]
    if isinstance(error, TooManyEntries):
        return PayloadTooLarge("The push has too many entries; nothing was stored.", errors=details)
    return InvalidPayload("The payload is not acceptable; nothing was stored.", errors=details)


def respond(rendered: Rendered) -> Response:
    """Return an adapter's rendered answer as an HTTP response."""
    return JSONResponse(
        rendered.body, status_code=rendered.status_code, media_type=rendered.media_type, headers=dict(rendered.headers)
    )


def adapter_error_renderer(
    adapter: Adapter, *, respond_with: Callable[[Rendered, Mapping[str, str]], Response] | None = None
) -> Renderer:
    """Return the renderer that gives a route's errors in the adapter's own format.

    `respond_with` turns the rendered error and its headers into the response, where the adapter's
    format has more than one encoding (FHIR JSON or XML, fhir_http.py); by default, JSON.
    """

    def render(error: GatewayError) -> Response:
        issues = [Issue("error", e.code, e.location, e.message) for e in error.errors] or [
            Issue("error", error.fhir_code, "", error.detail)
        ]
        rendered = adapter.render_error(error.status, issues)
        if respond_with is not None:
            return respond_with(rendered, error.headers)
        return JSONResponse(
            rendered.body,
            status_code=rendered.status_code,
            media_type=rendered.media_type,
            headers={**error.headers, **rendered.headers},
        )

    return render
