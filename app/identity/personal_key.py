"""Where the personal-data secret comes from: settings, or a key file made on first start."""

from __future__ import annotations

import os
from pathlib import Path

from app.config import Settings
from app.identity.personal import PersonalDataCipher, generate_secret

KEY_FILE = "personal-data.key"


def _key_file(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(generate_secret() + "\n")
    try:
        # A hard link appears whole or not at all: two processes starting at once agree on
        # whichever key was linked first.
        os.link(draft, path)
    except FileExistsError:
        pass
    finally:
        draft.unlink()
    return path.read_text().strip()


def personal_data_cipher(settings: Settings) -> PersonalDataCipher:
    """The cipher for members' personal data (the secret is never logged)."""
    if settings.personal_data_secret is not None:
        return PersonalDataCipher.from_secret(settings.personal_data_secret.get_secret_value())
    return PersonalDataCipher.from_secret(_key_file(settings.data_dir / KEY_FILE))
