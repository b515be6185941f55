"""Where the signing keys' passphrase comes from: settings, or a file made on first start."""

from __future__ import annotations

from app.config import Settings
from app.kit.secret_file import read_or_create_secret

PASSPHRASE_FILE = "signing-key.passphrase"


def signing_key_passphrase(settings: Settings) -> bytes:
    """The passphrase that encrypts the signing keys at rest (never logged)."""
    if settings.signing_key_passphrase is not None:
        value = settings.signing_key_passphrase.get_secret_value()
    else:
        value = read_or_create_secret(settings.data_dir / PASSPHRASE_FILE)
    if not value:
        raise ValueError("the signing key passphrase is empty")
    return value.encode()
