"""Finding a child (routes only)."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.kit.errors import ProblemRoute


router = APIRouter(prefix="/children", tags=["search"], route_class=ProblemRoute)
