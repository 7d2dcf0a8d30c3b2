"""Service settings (pydantic-settings): environment variables prefixed ``CAREPATH_``.

Nothing is read at import time: ``Settings()`` is built by the caller (``carepath serve``,
tests) and handed to ``create_app``. With no configuration at all the service runs on SQLite
in ``./data`` (created on first use) with a secret key generated into that folder.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "SESSION_COOKIE", "LOGIN_CSRF_COOKIE", "CdsClient", "ASYMMETRIC_ALGORITHMS"]

SESSION_COOKIE = "carepath_session"
"""Fixed (not a setting) so the OpenAPI security scheme can name it."""
LOGIN_CSRF_COOKIE = "carepath_login_csrf"

_SECRET_FILE = "secret.key"


ASYMMETRIC_ALGORITHMS = ("RS384", "ES384", "RS256", "ES256", "RS512", "ES512", "PS256", "PS384", "PS512")
"""JWT algorithms a CDS client may sign with: never 'none', never a shared-secret HMAC (CDS Hooks 2.0)."""


class CdsClient(BaseModel):
    """An EHR allowed to call the CDS service with a signed JWT (CDS Hooks 2.0 'Trusting CDS Clients')."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    issuer: str = Field(min_length=1, description="The JWT 'iss' this EHR signs with (exact match).")
    organisation: str = Field(description="Slug of the carepath organisation its calls belong to.")
    jwks_url: str | None = Field(default=None, description="Its JWK Set URL; a JWT 'jku' must equal it.")
    jwks: dict[str, object] | None = Field(default=None, description="Or its JWK Set, configured here.")
    algorithms: tuple[str, ...] = ASYMMETRIC_ALGORITHMS


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CAREPATH_", extra="ignore", frozen=True)

    data_dir: Path = Field(default=Path("data"), description="Holds the SQLite file and the secret key.")
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("CAREPATH_DATABASE_URL", "DATABASE_URL"),
        description="SQLAlchemy URL; postgresql://... uses psycopg 3. Default: SQLite in data_dir.",
    )
    secret_key: SecretStr | None = Field(
        default=None, description="Signs CSRF tokens. Default: generated once into data_dir/secret.key."
    )
    session_max_age_s: int = Field(default=8 * 3600, ge=60, description="Login session lifetime.")
    cookie_secure: bool = Field(
        default=True,
        description="Secure flag on cookies (default on; browsers accept it on http://localhost). "
        "Set false only to sign in over plain HTTP from another host, e.g. a test network.",
    )
    rules_dir: Path | None = Field(default=None, description="Rule pack folder (default: packaged rules/).")
    migrate_on_startup: bool = True
    log_level: str = "INFO"
    sqlite_busy_timeout_ms: int = 15000
    # graceful overload (api/overload.py), per worker process; max_concurrency 0 turns it off
    max_concurrency: int = Field(default=4, ge=0, description="Requests in progress per worker.")
    max_queue: int = Field(default=32, ge=0, description="Requests waiting per worker beyond that.")
    queue_timeout_s: float = Field(default=1.0, gt=0, description="Longest wait in the queue before 503.")
    retry_after_s: int = Field(
        default=1, ge=1, description="Retry-After (seconds) of a 503: overloaded, PDF renderers busy."
    )

    # -- hardening (docs/security.md, docs/reliability.md): limits, audit, keys, TLS --------------
    max_header_bytes: int = Field(default=16384, ge=1024, description="Request line + headers, bytes (431).")
    max_headers: int = Field(default=100, ge=8, description="Header fields per request (431).")
    max_body_bytes: int = Field(default=1_100_000, ge=1024, description="Request body, bytes (413).")
    header_timeout_s: float = Field(default=10.0, gt=0, description="Time to send the request head (408).")
    body_timeout_s: float = Field(default=30.0, gt=0, description="Time to send the whole body (408).")
    body_idle_timeout_s: float = Field(default=10.0, gt=0, description="Longest pause inside a body (408).")
    max_json_depth: int = Field(default=64, ge=8, description="Nesting depth of JSON bodies (422).")
    limit_concurrency: int = Field(default=200, ge=1, description="Requests in flight per worker (503).")
    max_connections: int = Field(default=1000, ge=1, description="Open connections per worker (dropped).")
    rate_per_ip: float = Field(default=300.0, ge=0, description="Requests/s per client address; 0 = off.")
    rate_per_account: float = Field(default=200.0, ge=0, description="Requests/s per signed-in account.")
    rate_anonymous_per_ip: float = Field(default=50.0, ge=0, description="Anonymous requests/s per address.")
    login_per_ip_per_minute: int = Field(default=20, ge=1, description="Sign-in attempts per address.")
    login_lockout_after: int = Field(default=5, ge=1, description="Failed sign-ins before a lockout.")
    login_lockout_base_s: int = Field(default=60, ge=1, description="First lockout; doubles each time.")
    login_lockout_max_s: int = Field(default=3600, ge=1, description="Longest lockout.")
    pdf_workers: int = Field(default=1, ge=1, description="PDFs rendered at once per worker.")
    pdf_queue: int = Field(default=2, ge=0, description="PDFs waiting for a renderer before 503.")
    anonymous_audit_window_s: int = Field(default=60, ge=1, description="Anonymous attempts: summary period.")
    audit_key: SecretStr | None = Field(
        default=None, description="Keys the audit chain and signs checkpoints. Default: data_dir/audit.key."
    )
    audit_checkpoint_path: Path | None = Field(
        default=None, description="Append-only file of signed audit heads (default in data_dir)."
    )
    audit_checkpoint_interval_s: float = Field(default=1.0, gt=0, description="Checkpoint period, seconds.")
    audit_syslog: str | None = Field(default=None, description="Also to syslog: /dev/log or host:port.")
    data_keys: SecretStr | None = Field(
        default=None,
        description="Encryption keys at rest: 'id:base64key[,id:base64key...]', first encrypts. "
        "Default: generated into data_dir/data.key.",
    )
    token_max_age_days: int = Field(default=90, ge=1, le=3650, description="Longest API token lifetime.")
    require_totp: bool = Field(default=False, description="Every user must sign in with a TOTP code.")
    hsts: bool = Field(default=False, description="Send Strict-Transport-Security (behind an HTTPS proxy).")
    tls_certfile: Path | None = Field(default=None, description="Serve HTTPS with this certificate (PEM).")
    tls_keyfile: Path | None = Field(default=None, description="... and this private key (PEM).")
    forwarded_allow_ips: str = Field(
        default="", description="Proxies trusted for X-Forwarded-For/-Proto, e.g. 127.0.0.1 (empty: none)."
    )
    min_free_disk_mb: int = Field(default=100, ge=0, description="Readiness fails below this free space.")
    migration_database_url: str | None = Field(
        default=None, description="PostgreSQL: schema owner URL for migrations (DATABASE_URL: app role)."
    )

    # CDS Hooks and FHIR (api/cds.py, api/jwt_auth.py, api/fhir_client.py); JSON in the environment
    cds_clients: tuple[CdsClient, ...] = Field(
        default=(), description="EHRs that may call with a signed JWT (issuer allow-list with their keys)."
    )
    cds_fhir_servers: tuple[str, ...] = Field(
        default=(), description="FHIR base URLs the service may query when a hook's prefetch is incomplete."
    )
    cds_allowed_origins: tuple[str, ...] = Field(
        default=(), description="Browser origins of EHRs allowed to call /cds-services (CORS)."
    )
    public_base_url: str | None = Field(
        default=None, description="This service's public URL (JWT 'aud', card links); default: the request's."
    )
    cds_smart_launch_url: str | None = Field(default=None, description="SMART launch URL offered on cards.")
    cds_jurisdiction: str = Field(default="US", pattern="^(US|UK|DE|CA)$")
    cds_fetch_timeout_s: float = Field(default=5.0, gt=0, le=30)
    cds_accept_api_tokens: bool = Field(
        default=True, description="Also accept carepath API tokens on CDS routes (tests, non-EHR callers)."
    )

    def sqlite_path(self) -> Path:
        return self.data_dir / "carepath.sqlite3"

    def resolved_database_url(self) -> str:
        """The URL to connect to; for the default SQLite file, the data dir is created (0700)."""
        url = self.database_url
        if not url:  # the file itself is created only by `carepath db upgrade` (api.db, 0600)
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            return f"sqlite:///{self.sqlite_path().resolve()}"
        if url.startswith("postgres://"):
            url = "postgresql://" + url[len("postgres://") :]
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://") :]
        return url

    def resolved_secret_key(self) -> bytes:
        """The configured key, or one generated on first run and kept in the data dir (0600)."""
        if self.secret_key is not None and self.secret_key.get_secret_value():
            return self.secret_key.get_secret_value().encode()
        from carepath.api.keys import key_file  # written aside and linked: never half-written

        path = self.data_dir / _SECRET_FILE
        key_file(path, secrets.token_hex(32).encode())
        key = path.read_bytes().strip()
        if len(key) < 32:
            raise RuntimeError(f"{path} is too short to be a secret key; delete it to regenerate")
        return key
