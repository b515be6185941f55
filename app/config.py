"""Settings, read from `TIMEBANK_*` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the service; defaults suit a laptop with nothing installed."""

    model_config = SettingsConfigDict(env_prefix="TIMEBANK_", extra="ignore")

    # Unset means: start the embedded PostgreSQL under `data_dir`.
    database_url: str | None = None
    # The role that owns the tables and runs migrations; defaults to `database_url`.
    migration_database_url: str | None = None
    # A standby that exports and statistics may be read from (none: the primary serves them),
    # and how far behind the primary it may be for that (seconds); past it, or unreachable,
    # the primary serves them (app/http/reads.py).
    read_database_url: str | None = None
    read_max_lag_s: float = Field(default=5.0, ge=0)
    data_dir: Path = Path("./var")
    app_role: str = "timebank_app"
    owner_role: str = "timebank_owner"
    database_name: str = "timebank"

    log_level: str = "info"
    log_json: bool = True

    max_body_bytes: int = 64 * 1024
    # Tests only: fault points to arm in this process (app/kit/faults.py), e.g.
    # `approve.posted=kill`. Empty in production.
    fault_points: str = ""
    # CSV imports of service records (POST /v1/service-records/import) may be this large.
    max_import_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_batch_size: int = Field(default=512, ge=1, le=4096)
    hold_sweep_interval_s: float = Field(default=1.0, gt=0)
    idempotency_retention_s: int = Field(default=24 * 3600, ge=60)
    idempotency_wait_s: float = Field(default=10.0, ge=0)
    credential_cache_ttl_s: float = Field(default=5.0, ge=0)
    db_pool_size: int = Field(default=10, ge=1, le=100)

    # Encrypts members' personal data (AES-GCM) and keys its lookup hashes (HMAC); at least
    # 32 characters. Unset: generated once into `data_dir/personal-data.key`. Several servers
    # or an external database need the same value everywhere: set it.
    personal_data_secret: SecretStr | None = None
    # Requests per second per credential (token bucket); 0 turns the limit off. A
    # credential's own `rate_limit_per_s` overrides it. Each server process counts alone.
    rate_limit_per_s: float = Field(default=50.0, ge=0)
    rate_limit_burst: int = Field(default=100, ge=1)

    # Transparency log (docs/audit-format.md). Posting answers carry a signed receipt unless
    # `receipts` is false (the receipt routes answer either way).
    receipts: bool = True
    # Encrypts the signing keys at rest. Unset: generated once into
    # `data_dir/signing-key.passphrase`; servers on several hosts need the same value: set it.
    signing_key_passphrase: SecretStr | None = None
    # A rotated key signs from this many seconds after `timebank keys rotate`, so that every
    # process sees it first; the same value everywhere, larger than any clock skew.
    signing_key_rotation_lead_s: float = Field(default=10.0, ge=0)
    # Checkpoint origin and key name of book B: "<log_origin>/B" (no space, no '+').
    log_origin: str = Field(default="timebank.local/ledger", pattern=r"^[!-*,-~]{1,200}$")
    # How often each server integrates new entries into the Merkle trees, and the longest
    # time a growing book goes without a new signed checkpoint.
    log_follow_interval_s: float = Field(default=1.0, gt=0)
    # Whether each server process follows the journal into the log itself (its hashing then
    # runs on the event loop that serves requests). `timebank serve` turns it off and runs
    # one `timebank follow-log` process beside its workers instead.
    follow_log_in_server: bool = True
    # TIMEBANK_CHECKPOINT_INTERVAL, in seconds (the name other deployments already use).
    checkpoint_interval: float = Field(default=5.0, gt=0)

    # Volunteering (service records). Days (daily caps, statistics by month, proofs) are
    # counted in this time zone.
    service_timezone: str = "Asia/Shanghai"
    # No member is credited more than this many minutes of service starting on one day.
    service_daily_cap_minutes: int = Field(default=12 * 60, ge=1, le=24 * 60)
    # A check-in code shown at the site is valid for this many seconds after it is made.
    checkin_code_ttl_s: int = Field(default=120, ge=10, le=3600)
    # An exchange quote can be executed at its terms for this many seconds.
    exchange_quote_ttl_s: int = Field(default=60, ge=5, le=3600)
    # A member's redeem code (shown as a QR code) can be used once within this many seconds.
    redeem_code_ttl_s: int = Field(default=60, ge=10, le=600)
    # A member's enrolment code (given to an organisation to join it) can be used once within
    # this many seconds.
    enrolment_code_ttl_s: int = Field(default=600, ge=60, le=86400)
    # A kiosk redemption holds the points and the stock this long, then voids itself.
    kiosk_redemption_ttl_s: int = Field(default=120, ge=10, le=3600)
    # A kiosk pairing code works this many seconds, once.
    kiosk_pairing_ttl_s: int = Field(default=600, ge=60, le=86400)
    # A console session (a person signed in at /console/) lasts this many seconds from sign-in.
    console_session_ttl_s: int = Field(default=8 * 3600, ge=300, le=7 * 86400)
    # The address printed under a service proof's QR code (where anyone checks a proof);
    # `timebank serve` sets it from --host and --port unless it is set.
    public_url: str = "http://127.0.0.1:8000"

    @field_validator("service_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        # Refused at start-up, not at the first check-out.
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (an IANA name, e.g. Asia/Shanghai)"
            ) from None
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
