"""Routes beyond consent (routes only)."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.kit.errors import ProblemRoute


router = APIRouter(prefix="/children", tags=["sharing"], route_class=ProblemRoute)
requests_router = APIRouter(prefix="/requests", tags=["sharing"], route_class=ProblemRoute)
