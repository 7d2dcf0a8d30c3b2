"""Service settings (pydantic-settings): environment variables prefixed ``CAREPATH_``.

Nothing is read at import time: ``Settings()`` is built by the caller (``carepath serve``,
tests) and handed to ``create_app``. With no configuration at all the service runs on SQLite
in ``./data`` (created on first use) with a secret key generated into that folder.
"""

from __future__ import annotations

import os
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
    cookie_secure: bool = Field(default=False, description="Set the Secure flag (behind HTTPS).")
    rules_dir: Path | None = Field(default=None, description="Rule pack folder (default: packaged rules/).")
    migrate_on_startup: bool = True
    log_level: str = "INFO"
    sqlite_busy_timeout_ms: int = 15000
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
        """The URL to connect to; for the default SQLite file, the data dir is created."""
        url = self.database_url
        if not url:
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            path = self.sqlite_path()
            if not path.exists():  # patient data: readable by the service's user only
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
            return f"sqlite:///{path.resolve()}"
        if url.startswith("postgres://"):
            url = "postgresql://" + url[len("postgres://") :]
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://") :]
        return url

    def resolved_secret_key(self) -> bytes:
        """The configured key, or one generated on first run and kept in the data dir (0600)."""
        if self.secret_key is not None and self.secret_key.get_secret_value():
            return self.secret_key.get_secret_value().encode()
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.data_dir / _SECRET_FILE
        if not path.exists():
            # Written aside, then linked into place: never a half-written key, and two
            # processes starting together agree on whichever key was linked first.
            tmp = path.with_name(f".{_SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, secrets.token_hex(32).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        key = path.read_bytes().strip()
        if len(key) < 32:
            raise RuntimeError(f"{path} is too short to be a secret key; delete it to regenerate")
        return key
