"""A witness's directory: `witness.json` (its name, listen address and logs), `witness.key`
(its secret key string, mode 0600) and `witness.db` (its store)."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from app.audit.cosignature import Cosigner, parse_signer_key, signer_key
from app.audit.note import NoteError, Verifier, is_valid_key_name, parse_verifier_key

CONFIG_FILE = "witness.json"
KEY_FILE = "witness.key"
DB_FILE = "witness.db"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8791


class WitnessConfigError(Exception):
    """The witness's directory, configuration or key cannot be used (the message says why)."""


def log_verifier(origin: str, vkey: str) -> Verifier:
    """A log's note key: an Ed25519 (type 0x01) verifier key named by the log's origin."""
    try:
        verifier = parse_verifier_key(vkey.strip())
    except (NoteError, ValueError) as exc:
        raise ValueError(f"{vkey!r} is not an Ed25519 note verifier key: {exc}") from exc
    if verifier.name != origin:
        raise ValueError(f"the key {verifier.name!r} is not named by the origin {origin!r}")
    return verifier


class Listen(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = DEFAULT_HOST
    port: int = Field(default=DEFAULT_PORT, ge=1, le=65535)


class LogEntry(BaseModel):
    """A log this witness cosigns: its origin line and the note keys it signs with."""

    model_config = ConfigDict(extra="forbid")

    origin: str = Field(min_length=1, max_length=1000)
    vkeys: list[str] = Field(min_length=1)

    @field_validator("origin")
    @classmethod
    def _one_line(cls, origin: str) -> str:
        if any(c < " " or c == "\x7f" for c in origin):
            raise ValueError("an origin is one line of printable characters")
        return origin

    @model_validator(mode="after")
    def _keys(self) -> LogEntry:
        ids = [(v.name, v.key_id) for v in self.verifiers()]
        if len(set(ids)) != len(ids):
            raise ValueError(f"{self.origin!r} lists one key twice")
        return self

    def verifiers(self) -> list[Verifier]:
        """The log's keys as note verifiers."""
        return [log_verifier(self.origin, vkey) for vkey in self.vkeys]


class WitnessConfig(BaseModel):
    """`witness.json`."""

    model_config = ConfigDict(extra="forbid")

    name: str
    listen: Listen = Listen()
    logs: list[LogEntry] = []

    @field_validator("name")
    @classmethod
    def _key_name(cls, name: str) -> str:
        if not is_valid_key_name(name):
            raise ValueError("a witness name is a key name: non-empty, no spaces and no '+'")
        return name

    @field_validator("logs")
    @classmethod
    def _logs(cls, logs: list[LogEntry]) -> list[LogEntry]:
        origins = [log.origin for log in logs]
        if len(set(origins)) != len(origins):
            raise ValueError("an origin is listed twice")
        return logs

    def log_keys(self) -> dict[str, list[Verifier]]:
        """Each witnessed origin's verifiers."""
        return {log.origin: log.verifiers() for log in self.logs}


@dataclass(frozen=True)
class WitnessDir:
    """The files of one witness."""

    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def key_path(self) -> Path:
        return self.root / KEY_FILE

    @property
    def db_path(self) -> Path:
        return self.root / DB_FILE


def load_config(directory: WitnessDir) -> WitnessConfig:
    """Read and check `witness.json`; WitnessConfigError names the file and the fault."""
    path = directory.config_path
    try:
        raw = path.read_text()
    except FileNotFoundError:
        raise WitnessConfigError(
            f"{path} does not exist: run `timebank witness init --dir {directory.root}`"
        ) from None
    except OSError as exc:
        raise WitnessConfigError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        return WitnessConfig.model_validate_json(raw)
    except ValidationError as exc:
        faults = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(file)'}: {e['msg']}" for e in exc.errors()
        )
        raise WitnessConfigError(f"{path}: {faults}") from exc


def save_config(directory: WitnessDir, config: WitnessConfig) -> None:
    """Write `witness.json` whole or not at all."""
    draft = directory.config_path.with_name(f".{CONFIG_FILE}.{os.getpid()}")
    draft.write_text(json.dumps(config.model_dump(), indent=2, ensure_ascii=False) + "\n")
    os.replace(draft, directory.config_path)


def create_key(directory: WitnessDir, name: str) -> Cosigner:
    """Make the witness's key in `witness.key` (mode 0600; never overwritten)."""
    private_key = Ed25519PrivateKey.generate()
    try:
        fd = os.open(directory.key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise WitnessConfigError(f"{directory.key_path} exists already") from None
    with os.fdopen(fd, "w") as file:
        file.write(signer_key(name, private_key) + "\n")
    return Cosigner.from_public_key(name, private_key.public_key())


@dataclass(frozen=True)
class WitnessKey:
    """The witness's cosigning key (its repr never shows the secret)."""

    name: str
    private_key: Ed25519PrivateKey

    def __repr__(self) -> str:
        return f"WitnessKey({self.name!r})"

    @property
    def cosigner(self) -> Cosigner:
        return Cosigner.from_public_key(self.name, self.private_key.public_key())


def load_key(directory: WitnessDir, name: str) -> WitnessKey:
    """Read `witness.key`, refusing a file others may read or a key of another name."""
    path = directory.key_path
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except FileNotFoundError:
        raise WitnessConfigError(f"{path} does not exist") from None
    except OSError as exc:
        raise WitnessConfigError(f"cannot read {path}: {exc.strerror}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise WitnessConfigError(f"{path} may be read by others: chmod 600 it")
    try:
        key_name, private_key = parse_signer_key(text)
    except (NoteError, ValueError) as exc:
        # The message of a parse error never quotes the key.
        raise WitnessConfigError(f"{path} does not hold a cosigner key (type 0x04)") from exc
    if key_name != name:
        raise WitnessConfigError(f"{path} is the key of {key_name!r}, not of {name!r}")
    return WitnessKey(key_name, private_key)
