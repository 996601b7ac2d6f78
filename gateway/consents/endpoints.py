"""The consent registry (routes only)."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.kit.errors import ProblemRoute


router = APIRouter(prefix="/children", tags=["consents"], route_class=ProblemRoute)
