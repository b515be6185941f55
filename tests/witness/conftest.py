"""A witness in a temporary directory and a log to feed it: real checkpoints signed by the
log's key and real consistency proofs from app.audit.merkle over a list of leaves."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.audit import merkle
from app.audit.checkpoint import Checkpoint, sign_checkpoint
from app.audit.cosignature import Cosigner
from app.audit.note import Verifier
from app.witness.app import create_app
from app.witness.config import LogEntry, WitnessConfig, WitnessDir, create_key, save_config

ORIGIN = "timebank.example/log/district"
WITNESS = "witness.example/civil-affairs"
NOW = 1_764_950_400


def leaf(i: int, variant: str = "") -> bytes:
    return merkle.leaf_hash(f"entry {i}{variant}".encode())


@dataclass
class Log:
    """A log of `origin` whose leaves are `leaves`, signing with `key`."""

    origin: str = ORIGIN
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    leaves: list[bytes] = field(default_factory=lambda: [leaf(i) for i in range(64)])

    @property
    def verifier(self) -> Verifier:
        return Verifier.from_public_key(self.origin, self.key.public_key())

    def root(self, size: int) -> bytes:
        return merkle.root_from_leaves(self.leaves[:size])

    def note(self, size: int, root: bytes | None = None) -> str:
        checkpoint = Checkpoint(self.origin, size, self.root(size) if root is None else root)
        return sign_checkpoint(checkpoint, self.origin, self.key)

    def proof(self, old: int, new: int) -> list[bytes]:
        tree = merkle.MemoryTree()
        tree.extend(self.leaves[:new])
        return tree.consistency_proof(old, new)

    def body(
        self, old: int, size: int, proof: list[bytes] | None = None, note: str | None = None
    ) -> bytes:
        """An add-checkpoint body from `old` to `size` (a true proof unless given)."""
        if proof is None:
            proof = self.proof(old, size) if 0 < old < size else []
        lines = [f"old {old}", *(merkle_b64(h) for h in proof)]
        return ("\n".join(lines) + "\n\n" + (note or self.note(size))).encode()


def merkle_b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def origin_path(origin: str) -> str:
    return f"/{hashlib.sha256(origin.encode()).hexdigest()}/checkpoint"


@dataclass
class Witnessed:
    """A witness's directory, its cosigner (public key) and the log it witnesses."""

    root: Path
    cosigner: Cosigner
    log: Log


@pytest.fixture
def witnessed(tmp_path: Path) -> Witnessed:
    files = WitnessDir(tmp_path / "witness")
    files.root.mkdir()
    cosigner = create_key(files, WITNESS)
    log = Log()
    config = WitnessConfig(
        name=WITNESS, logs=[LogEntry(origin=log.origin, vkeys=[log.verifier.vkey()])]
    )
    save_config(files, config)
    return Witnessed(files.root, cosigner, log)


def client_of(root: Path, clock: Callable[[], float] = lambda: NOW) -> httpx.AsyncClient:
    app = create_app(root, clock)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://witness")


@pytest.fixture
async def client(witnessed: Witnessed) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(witnessed.root) as http:
        yield http
