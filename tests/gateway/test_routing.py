"""Deny by default: every route is public by name, or sits under an authenticated parent."""

from __future__ import annotations

from fastapi.routing import APIRoute

from gateway.app import PUBLIC_PATHS
from gateway.auth.dependencies import authenticate, require_client, require_staff

DOCS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def _dependency_calls(route: APIRoute) -> set[object]:
    calls = set()
    stack = list(route.dependant.dependencies)
    while stack:
        dependant = stack.pop()
        calls.add(dependant.call)
        stack.extend(dependant.dependencies)
    return calls


def test_every_route_is_authenticated_or_listed_public(app) -> None:  # type: ignore[no-untyped-def]
    unguarded = []
    for route in app.routes:
        if route.path in DOCS:
            continue
        assert isinstance(route, APIRoute), f"unexpected route type at {route.path}"
        calls = _dependency_calls(route)
        guarded = require_staff in calls or require_client in calls
        if not guarded and route.path not in PUBLIC_PATHS:
            unguarded.append(route.path)
        if route.path in PUBLIC_PATHS:
            assert authenticate not in calls or guarded, route.path
    assert unguarded == []


def test_public_paths_exist(app) -> None:  # type: ignore[no-untyped-def]
    assert PUBLIC_PATHS <= {route.path for route in app.routes}


def test_staff_and_client_routes_are_separate(app) -> None:  # type: ignore[no-untyped-def]
    for route in app.routes:
        if isinstance(route, APIRoute):
            calls = _dependency_calls(route)
            assert not (require_staff in calls and require_client in calls), route.path
            if route.path.startswith("/api/"):
                assert require_staff in calls, route.path
            if route.path.startswith("/fhir/") and route.path not in PUBLIC_PATHS:
                assert require_client in calls, route.path
