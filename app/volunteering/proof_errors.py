"""Refusals of the service proof routes (docs/service-proof.md)."""

from __future__ import annotations

from app.kit.problems import TimebankError


class ServiceProofNotFound(TimebankError):
    status, slug, title = 404, "service-proof-not-found", "Service proof not found"
