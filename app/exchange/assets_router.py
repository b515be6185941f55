"""HTTP routes of exchange: assets."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/v1", tags=["exchange"])
