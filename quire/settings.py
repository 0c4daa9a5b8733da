"""Runtime configuration, read once from the environment and `.env`.

One `DATABASE_URL` drives everything: the embedded default is a SQLite file under the data
directory; production points it at PostgreSQL (`postgresql+psycopg://...`).
"""

from __future__ import annotations

import base64
import secrets
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # Where the embedded database, generated secrets and reports live.
    data_dir: Path = Field(default=Path("data"), validation_alias="QUIRE_DATA_DIR")
    database_url: str = Field(default="", validation_alias="DATABASE_URL")

    api_host: str = Field(default="127.0.0.1", validation_alias="QUIRE_API_HOST")
    api_port: int = Field(default=8000, validation_alias="QUIRE_API_PORT")
    log_level: str = Field(default="INFO", validation_alias="QUIRE_LOG_LEVEL")

    # Access tokens are JWTs signed with this secret. Left unset, a random secret is generated
    # once into the data directory so every local process agrees on it.
    jwt_secret: SecretStr | None = Field(default=None, validation_alias="QUIRE_JWT_SECRET")
    jwt_issuer: str = Field(default="quire", validation_alias="QUIRE_JWT_ISSUER")
    jwt_audience: str = Field(default="quire-api", validation_alias="QUIRE_JWT_AUDIENCE")
    access_token_ttl_seconds: int = Field(default=900, validation_alias="QUIRE_ACCESS_TOKEN_TTL")
    refresh_token_ttl_seconds: int = Field(
        default=14 * 24 * 3600, validation_alias="QUIRE_REFRESH_TOKEN_TTL"
    )
    # Browsers only send Secure cookies over HTTPS; turn off for plain-HTTP local development.
    cookie_secure: bool = Field(default=True, validation_alias="QUIRE_COOKIE_SECURE")

    login_max_failures: int = Field(default=5, validation_alias="QUIRE_LOGIN_MAX_FAILURES")
    lockout_seconds: int = Field(default=900, validation_alias="QUIRE_LOCKOUT_SECONDS")
    # Sliding-window rate limits: at most N attempts in any window-long span (not per clock
    # minute), counted in the database so every API process shares them (quire.auth.rate_limit).
    rate_limit_window_seconds: int = Field(default=60, ge=1, validation_alias="QUIRE_RATE_WINDOW")
    login_limit_per_ip: int = Field(default=30, ge=1, validation_alias="QUIRE_LOGIN_LIMIT_PER_IP")
    login_limit_per_user: int = Field(
        default=10, ge=1, validation_alias="QUIRE_LOGIN_LIMIT_PER_USER"
    )
    refresh_limit_per_ip: int = Field(
        default=120, ge=1, validation_alias="QUIRE_REFRESH_LIMIT_PER_IP"
    )
    refresh_limit_per_user: int = Field(
        default=60, ge=1, validation_alias="QUIRE_REFRESH_LIMIT_PER_USER"
    )
    # Proxies whose X-Forwarded-For / X-Forwarded-Proto `quire api` believes: comma-separated
    # addresses or CIDR ranges (uvicorn's forwarded_allow_ips). Empty: trust no proxy, so the
    # client address (and the per-IP limits) is always the connecting peer's.
    forwarded_allow_ips: str = Field(default="", validation_alias="QUIRE_FORWARDED_ALLOW_IPS")

    @property
    def trusted_proxies(self) -> list[str]:
        """`forwarded_allow_ips` as a list (empty: forwarded headers are ignored)."""
        return [part.strip() for part in self.forwarded_allow_ips.split(",") if part.strip()]

    max_body_bytes: int = Field(default=1_048_576, validation_alias="QUIRE_MAX_BODY_BYTES")
    # Live stream: per-subscriber buffer; a consumer that lets it fill is disconnected.
    stream_queue_size: int = Field(default=1000, validation_alias="QUIRE_STREAM_QUEUE_SIZE")
    stream_poll_seconds: float = Field(default=1.0, validation_alias="QUIRE_STREAM_POLL_SECONDS")
    stream_heartbeat_seconds: float = Field(
        default=15.0, validation_alias="QUIRE_STREAM_HEARTBEAT_SECONDS"
    )

    db_pool_size: int = Field(default=20, validation_alias="QUIRE_DB_POOL_SIZE")
    db_max_overflow: int = Field(default=20, validation_alias="QUIRE_DB_MAX_OVERFLOW")

    # --- QA pipeline (quire.qa) -----------------------------------------------------------------
    # A LanguageTool-compatible grammar service (POST {url}/v2/check), e.g. a self-hosted
    # LanguageTool at http://languagetool:8010. Empty: the external check is reported as skipped.
    grammar_check_url: str = Field(default="", validation_alias="QUIRE_GRAMMAR_CHECK_URL")
    grammar_language: str = Field(default="en-US", validation_alias="QUIRE_GRAMMAR_LANGUAGE")
    grammar_timeout_seconds: float = Field(
        default=10.0, gt=0, validation_alias="QUIRE_GRAMMAR_TIMEOUT_SECONDS"
    )
    # The grammar check fails above this many issues per 1,000 words.
    grammar_max_issues_per_1000_words: float = Field(
        default=5.0, ge=0, validation_alias="QUIRE_GRAMMAR_MAX_ISSUES_PER_1000_WORDS"
    )
    # Estimated Jaccard similarity (of word 5-shingles) from which work on another order of the
    # tenant counts as a near-duplicate.
    duplicate_threshold: float = Field(
        default=0.8, gt=0, le=1, validation_alias="QUIRE_DUPLICATE_THRESHOLD"
    )
    # Late fines: none within the grace period; past it, this percent of the fee per started day
    # late (counted from the deadline), never more than the cap. See quire.qa.fines.
    late_fine_grace_hours: Decimal = Field(
        default=Decimal(0), ge=0, validation_alias="QUIRE_LATE_FINE_GRACE_HOURS"
    )
    late_fine_percent_per_day: Decimal = Field(
        default=Decimal(5), ge=0, le=100, validation_alias="QUIRE_LATE_FINE_PERCENT_PER_DAY"
    )
    late_fine_cap_percent: Decimal = Field(
        default=Decimal(50), ge=0, le=100, validation_alias="QUIRE_LATE_FINE_CAP_PERCENT"
    )

    # --- end of QA pipeline ---------------------------------------------------------------------

    # --- Maintenance (quire.orders.maintenance, quire.events.retention) -------------------------
    # Relayed events older than this many days are pruned (the live stream cannot replay past
    # it); events the outbox relay has not handed on yet are never pruned, however old.
    event_retention_days: int = Field(
        default=30, ge=1, validation_alias="QUIRE_EVENT_RETENTION_DAYS"
    )
    # --- end of maintenance ---------------------------------------------------------------------

    # --- Payroll (quire.payroll) ------------------------------------------------------------------
    # Reports (GX Data Docs, payout files, payslips) are written under this directory.
    reports_dir_override: Path | None = Field(default=None, validation_alias="QUIRE_REPORTS_DIR")
    # The euro foreign exchange reference rates, in the ECB's eurofxref-daily.xml format.
    fx_rates_url: str = Field(
        default="https://www.ecb.europa.eu/stats/eurofxref/eurofxref-daily.xml",
        validation_alias="QUIRE_FX_RATES_URL",
    )
    # A rates file in the same format, used when the provider cannot be reached (empty: none).
    fx_rates_fallback_file: str = Field(default="", validation_alias="QUIRE_FX_RATES_FILE")
    fx_timeout_seconds: float = Field(
        default=10.0, gt=0, validation_alias="QUIRE_FX_TIMEOUT_SECONDS"
    )
    # First retry delay of the rates download; doubles per retry (4 retries, plus jitter).
    fx_retry_backoff_seconds: float = Field(
        default=2.0, ge=0, validation_alias="QUIRE_FX_RETRY_BACKOFF_SECONDS"
    )
    # The gate: a run's rate may differ from the provider's by at most this fraction...
    fx_provider_tolerance: Decimal = Field(
        default=Decimal("0.001"), ge=0, validation_alias="QUIRE_FX_PROVIDER_TOLERANCE"
    )
    # ...and from the previous run's rate for the same pair by at most this fraction.
    fx_previous_run_tolerance: Decimal = Field(
        default=Decimal("0.05"), ge=0, validation_alias="QUIRE_FX_PREVIOUS_RUN_TOLERANCE"
    )
    # Fraud protection: bank details changed within this many days hold the specialist's payout
    # for review in the next run.
    payout_details_cooling_days: int = Field(
        default=14, ge=0, validation_alias="QUIRE_PAYOUT_DETAILS_COOLING_DAYS"
    )
    # How long a payroll run waits for finance's approval before it fails.
    payroll_approval_timeout_hours: float = Field(
        default=72, gt=0, validation_alias="QUIRE_PAYROLL_APPROVAL_TIMEOUT_HOURS"
    )
    # For its first this many seconds the wait keeps its process (an approver at hand continues
    # the run at once); after that the run is suspended and holds no worker. 0: suspend at once.
    payroll_approval_hold_seconds: float = Field(
        default=900, ge=0, validation_alias="QUIRE_PAYROLL_APPROVAL_HOLD_SECONDS"
    )
    payroll_deployment: str = Field(
        default="payroll-run/payroll-run", validation_alias="QUIRE_PAYROLL_DEPLOYMENT"
    )
    # --- end of payroll -------------------------------------------------------------------------

    # --- reconciliation (quire/reconciliation/) ---------------------------------------------------
    # Matching by amount: how far a bank line's value date may be from a payout's date, and how
    # alike the counterparty's name must be to the payee's (0..1).
    reconciliation_window_days: int = Field(
        default=5, ge=0, le=60, validation_alias="QUIRE_RECONCILIATION_WINDOW_DAYS"
    )
    reconciliation_name_threshold: float = Field(
        default=0.6, ge=0, le=1, validation_alias="QUIRE_RECONCILIATION_NAME_THRESHOLD"
    )
    # The largest difference finance may write off to bank fees, in major units of the line's
    # currency (5 = EUR 5.00, JPY 5, KWD 5.000).
    reconciliation_write_off_limit: Decimal = Field(
        default=Decimal("5"), ge=0, validation_alias="QUIRE_RECONCILIATION_WRITE_OFF_LIMIT"
    )
    # The deployment whose daily schedule reconciles every tenant; notify-finance is run by the
    # automation on quire.reconciliation.failed.
    reconciliation_deployment: str = Field(
        default="reconcile-ledger/reconcile-ledger",
        validation_alias="QUIRE_RECONCILIATION_DEPLOYMENT",
    )
    # --- end of reconciliation ------------------------------------------------------------------

    # --- mail (quire/mail.py): SMTP ---------------------------------------------------------------
    smtp_host: str = Field(default="", validation_alias="QUIRE_SMTP_HOST")  # empty: no mail
    smtp_port: int = Field(default=25, ge=1, le=65535, validation_alias="QUIRE_SMTP_PORT")
    smtp_from: str = Field(default="quire@localhost", validation_alias="QUIRE_SMTP_FROM")
    smtp_starttls: bool = Field(default=False, validation_alias="QUIRE_SMTP_STARTTLS")
    smtp_user: str = Field(default="", validation_alias="QUIRE_SMTP_USER")
    smtp_password: SecretStr = Field(default=SecretStr(""), validation_alias="QUIRE_SMTP_PASSWORD")
    smtp_timeout_seconds: float = Field(
        default=10, gt=0, validation_alias="QUIRE_SMTP_TIMEOUT_SECONDS"
    )

    # --- lifecycle (quire/lifecycle/) ------------------------------------------------------------
    # The keys that seal per-tenant connection settings (AES-256-GCM): comma-separated
    # `<key id>:<32 bytes, urlsafe base64>`, the first one seals, every one opens (rotation: put
    # the new key first, run `quire lifecycle rotate-secrets`, then drop the old one). Left unset,
    # one key is generated once into the data directory, as the JWT secret is.
    secrets_keys: SecretStr | None = Field(default=None, validation_alias="QUIRE_SECRETS_KEYS")
    # Standard Webhooks: how far a delivery's timestamp may be from now, either way.
    webhook_tolerance_seconds: int = Field(
        default=300, ge=1, le=3600, validation_alias="QUIRE_WEBHOOK_TOLERANCE_SECONDS"
    )
    # The circuit breaker per provider and tenant: opens after this many consecutive transient
    # failures, stays open this long, then lets one probe through.
    breaker_threshold: int = Field(default=5, ge=1, validation_alias="QUIRE_BREAKER_THRESHOLD")
    breaker_open_seconds: float = Field(
        default=30, gt=0, validation_alias="QUIRE_BREAKER_OPEN_SECONDS"
    )
    # A compensation's retries (seconds before each); what is still not undone after them is
    # retried by the maintenance flow (hourly) until it is.
    lifecycle_undo_retry_seconds: list[float] = Field(
        default=[1.0, 5.0, 15.0], validation_alias="QUIRE_LIFECYCLE_UNDO_RETRY_SECONDS"
    )
    # The deployment the outbox relay starts for each lifecycle event.
    lifecycle_deployment: str = Field(
        default="lifecycle/lifecycle", validation_alias="QUIRE_LIFECYCLE_DEPLOYMENT"
    )
    # --- end of lifecycle -----------------------------------------------------------------------

    # --- Prefect flows (flows/, tasks/, deployments/) ---------------------------------------------
    # Server mode: the name of a prefect-sqlalchemy SqlAlchemyConnector block holding the database
    # URL (set by ops in the Prefect UI). Absent block: DATABASE_URL decides. Empty: never look.
    database_block: str = Field(default="quire-database", validation_alias="QUIRE_DATABASE_BLOCK")
    # The platform's cut of an accepted order's fee, in basis points (2000 = 20%).
    platform_fee_bps: int = Field(
        default=2000, ge=0, le=10_000, validation_alias="QUIRE_PLATFORM_FEE_BPS"
    )
    # How long a QA run waits, suspended, for each human review stage before it times out.
    review_timeout_hours: float = Field(
        default=168, gt=0, validation_alias="QUIRE_REVIEW_TIMEOUT_HOURS"
    )
    # First retry delay of checks that call out; each further retry doubles it (plus jitter).
    qa_retry_backoff_seconds: float = Field(
        default=2.0, ge=0, validation_alias="QUIRE_QA_RETRY_BACKOFF_SECONDS"
    )
    # The deployment the outbox relay starts for each submission ("<flow name>/<deployment>").
    qa_deployment: str = Field(
        default="qa-pipeline/qa-pipeline", validation_alias="QUIRE_QA_DEPLOYMENT"
    )
    relay_batch_size: int = Field(
        default=200, ge=1, le=10_000, validation_alias="QUIRE_RELAY_BATCH"
    )
    # --- end of Prefect flows -------------------------------------------------------------------

    @field_validator("database_url")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'quire.db').resolve()}"

    def secrets_keyring(self) -> str:
        """`QUIRE_SECRETS_KEYS`, or the key generated once into the data directory."""
        if self.secrets_keys is not None:
            return self.secrets_keys.get_secret_value()
        path = self.data_dir / "secrets_keys"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii")
            path.write_text(f"k1:{key}")
            path.chmod(0o600)
        return path.read_text().strip()

    @property
    def reports_dir(self) -> Path:
        """Where reports for people go: GX Data Docs, payout files, payslips."""
        return self.reports_dir_override or self.data_dir / "reports"

    def jwt_signing_key(self) -> str:
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        path = self.data_dir / "jwt_secret"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return path.read_text().strip()


@lru_cache
def get_settings() -> Settings:
    return Settings()
