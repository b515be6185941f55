"""Where the personal-data secret comes from: settings, or a key file made on first start."""

from __future__ import annotations

from app.config import Settings
from app.identity.personal import PersonalDataCipher
from app.kit.secret_file import read_or_create_secret

KEY_FILE = "personal-data.key"


def personal_data_cipher(settings: Settings) -> PersonalDataCipher:
    """The cipher for members' personal data (the secret is never logged)."""
    if settings.personal_data_secret is not None:
        return PersonalDataCipher.from_secret(settings.personal_data_secret.get_secret_value())
    return PersonalDataCipher.from_secret(read_or_create_secret(settings.data_dir / KEY_FILE))
