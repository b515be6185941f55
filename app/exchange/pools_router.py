"""HTTP routes of exchange: pools and donations."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/v1", tags=["exchange"])
