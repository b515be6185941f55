"""The witness: add-checkpoint from body to answer, with its logs and metrics (no HTTP here)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from prometheus_client import CollectorRegistry, Counter

from app.kit.problems import TimebankError
from app.witness.config import WitnessConfig, WitnessKey
from app.witness.errors import WitnessUnavailable
from app.witness.protocol import Submission, authenticate, parse_request
from app.witness.store import Cosigned, Refused, WitnessStore

log = structlog.get_logger("timebank.witness")
# The `origin` label of refusals before a witnessed origin is known (malformed, unknown log).
NO_ORIGIN = ""


class WitnessMetrics:
    """The witness's own registry (not the ledger's): one per app. Its names say `server`: the
    ledger's `timebank_witness_*` count what the log's witnesses answered it."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.cosignatures = Counter(
            "timebank_witness_server_cosignatures",
            "Checkpoints cosigned, by origin",
            ["origin"],
            registry=self.registry,
        )
        self.refusals = Counter(
            "timebank_witness_server_refusals",
            "add-checkpoint requests refused, by origin ('' before one is known) and status",
            ["origin", "status"],
            registry=self.registry,
        )
        self.alarms = Counter(
            "timebank_witness_server_alarms",
            "Checkpoints validly signed by a witnessed log but inconsistent with what was cosigned",
            ["origin"],
            registry=self.registry,
        )


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def origin_hash(origin: str) -> str:
    """The lowercase hex SHA-256 of an origin, as tlog-witness's monitoring path names it."""
    return hashlib.sha256(origin.encode()).hexdigest()


@dataclass
class Witness:
    """One witness's configuration, key, store and metrics."""

    config: WitnessConfig
    key: WitnessKey
    store: WitnessStore
    metrics: WitnessMetrics
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self.logs = self.config.log_keys()
        self.by_hash = {origin_hash(origin): origin for origin in self.logs}

    async def add_checkpoint(self, body: bytes) -> Cosigned | Refused:
        """Parse, authenticate and decide on an add-checkpoint body; raises the problem of a
        request refused before the stored state is read, returns a decided refusal."""
        try:
            submission = authenticate(parse_request(body), self.logs)
        except TimebankError as exc:
            # Only a 403 knows a witnessed origin (it carries it): others may name anything.
            self.refused_early(exc, str(exc.extra.get("origin", NO_ORIGIN)))
            raise
        try:
            outcome = await asyncio.to_thread(
                self.store.submit, submission, body, self.key, lambda: int(self.clock())
            )
        except sqlite3.OperationalError as exc:
            log.error("witness.store_unavailable", origin=submission.origin, error=str(exc))
            raise WitnessUnavailable("the store did not take the request in time") from exc
        if isinstance(outcome, Cosigned):
            self._cosigned(submission, outcome)
        else:
            self._refused(submission, outcome)
        return outcome

    def refused_early(self, error: TimebankError, origin: str = NO_ORIGIN) -> None:
        """Count and log a refusal decided before any stored state (400, 403, 404, 413)."""
        self.metrics.refusals.labels(origin, str(error.status)).inc()
        log.warning(
            "witness.refused",
            origin=origin,
            status=error.status,
            reason=error.slug,
            detail=error.detail,
        )

    async def latest_note(self, hex_hash: str) -> str | None:
        """The latest cosigned note of the origin whose hash is `hex_hash`, if any."""
        origin = self.by_hash.get(hex_hash)
        if origin is None:
            return None
        return await asyncio.to_thread(self.store.latest_note, origin)

    def _cosigned(self, submission: Submission, outcome: Cosigned) -> None:
        self.metrics.cosignatures.labels(submission.origin).inc()
        log.info(
            "witness.cosigned",
            origin=submission.origin,
            old_size=submission.request.old_size,
            size=submission.checkpoint.size,
            root=_b64(submission.checkpoint.root_hash),
            timestamp=outcome.timestamp,
        )

    def _refused(self, submission: Submission, outcome: Refused) -> None:
        refusal, stored = outcome.refusal, outcome.stored
        origin, checkpoint = submission.origin, submission.checkpoint
        self.metrics.refusals.labels(origin, str(refusal.status)).inc()
        fields = {
            "origin": origin,
            "old_size": submission.request.old_size,
            "size": checkpoint.size,
            "stored_size": stored.size,
            "reason": refusal.reason,
        }
        if refusal.alarm:
            self.metrics.alarms.labels(origin).inc()
            log.error(
                "witness.alarm",
                **fields,
                stored_root=_b64(stored.root),
                claimed_root=_b64(checkpoint.root_hash),
            )
        else:
            log.warning("witness.refused", status=refusal.status, **fields)
