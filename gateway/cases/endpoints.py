"""Teams, members and cases (routes only)."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.kit.errors import ProblemRoute

teams_router = APIRouter(prefix="/teams", tags=["teams"], route_class=ProblemRoute)
cases_router = APIRouter(prefix="/cases", tags=["cases"], route_class=ProblemRoute)
