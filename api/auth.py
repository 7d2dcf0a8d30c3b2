"""Accounts and credentials: users, API tokens, login sessions.

Plain functions over ``api.db.Database``; used by the HTTP layer (``api.deps``), the command
line (``carepath users ...``) and tests. Only hashes of passwords (argon2id) and tokens
(SHA-256) are stored; a minted API token is shown once.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from carepath.api.db import Database, UniqueViolation
from carepath.api.records import ROLES, Principal, User
from carepath.api.security import (
    MIN_PASSWORD_LENGTH,
    hash_password,
    needs_rehash,
    new_api_token,
    new_session_token,
    token_sha256,
    verify_password,
)

__all__ = [
    "AccountError",
    "normalise_email",
    "create_user",
    "mint_token",
    "principal_for_bearer",
    "principal_for_session",
    "login",
    "logout",
    "admin_count",
    "list_users",
    "disable_user",
]

DEFAULT_TOKEN_DAYS = 90
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}$")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class AccountError(ValueError):
    """A user-management request that cannot be done (message is safe to print)."""


def normalise_email(email: str) -> str:
    email = email.strip().lower()
    if not _EMAIL.match(email):
        raise AccountError("not a valid email address")
    return email


def create_user(
    db: Database,
    *,
    org: str,
    email: str,
    password: str,
    role: str,
    now: datetime,
    org_name: str | None = None,
) -> User:
    """Create a user (and the organisation, if new). ``org`` is the organisation's slug."""
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}")
    if not _SLUG.match(org):
        raise AccountError("organisation must be a slug: lowercase letters, digits and '-'")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    email = normalise_email(email)
    password_hash = hash_password(password)
    with db.transaction() as tx:
        organisation = tx.org_by_slug(org) or tx.add_org(org, org_name or org, now)
        try:
            return tx.add_user(organisation, email, password_hash, role, now)
        except UniqueViolation:
            raise AccountError("a user with this email already exists") from None


def mint_token(
    db: Database, email: str, *, now: datetime, label: str = "api", expires_at: datetime | None = None
) -> str:
    """A new API token for ``email``; returns the token itself (stored only as a hash).
    Without ``expires_at`` it expires ``token_max_age_days`` after ``now`` (api.settings)."""
    email = normalise_email(email)
    token = new_api_token()
    with db.transaction() as tx:
        found = tx.user_with_hash(email)
        if found is None or not found[0].active:
            raise AccountError("no active user with this email")
        tx.add_token(found[0].id, token_sha256(token), label[:100], now, expires_at)
    return token


def principal_for_bearer(
    db: Database, token: str, now: datetime | None = None, max_age_days: int = DEFAULT_TOKEN_DAYS
) -> Principal | None:
    """The token's user, if the token is known, not revoked and not expired (a token minted
    without an expiry lives ``max_age_days`` from its creation)."""
    now = now or datetime.now(UTC)
    with db.transaction(readonly=True) as tx:
        user = tx.user_by_live_token(token_sha256(token), now, timedelta(days=max_age_days))
    return Principal(user, "bearer") if user is not None and user.active else None


def principal_for_session(db: Database, session_token: str, now: datetime) -> Principal | None:
    with db.transaction(readonly=True) as tx:
        user = tx.user_by_session(token_sha256(session_token), now)
    return Principal(user, "session", session_token) if user is not None and user.active else None


def login(
    db: Database, email: str, password: str, *, now: datetime, max_age_s: int
) -> tuple[User, str] | None:
    """Check the password; on success open a session and return (user, session token)."""
    try:
        email = normalise_email(email)
    except AccountError:
        verify_password(None, password)
        return None
    with db.transaction(readonly=True) as tx:
        found = tx.user_with_hash(email)
    user, stored = found if found else (None, None)
    if not verify_password(stored, password) or user is None or not user.active:
        return None
    token = new_session_token()
    with db.transaction() as tx:
        if stored is not None and needs_rehash(stored):
            tx.set_password_hash(user.id, hash_password(password))
        tx.add_session(token_sha256(token), user.id, now, now + timedelta(seconds=max_age_s))
    return user, token


def logout(db: Database, session_token: str, now: datetime) -> None:
    """End this session (and sweep expired ones)."""
    with db.transaction() as tx:
        tx.delete_session(token_sha256(session_token), now)


def admin_count(db: Database) -> int:
    with db.transaction(readonly=True) as tx:
        return tx.count_admins()


def list_users(db: Database) -> list[User]:
    with db.transaction(readonly=True) as tx:
        return tx.list_users()


def disable_user(db: Database, email: str, now: datetime) -> User:
    """Deactivate a user and revoke their API tokens (their sessions stop working at once)."""
    email = normalise_email(email)
    with db.transaction() as tx:
        found = tx.user_with_hash(email)
        if found is None:
            raise AccountError("no user with this email")
        tx.set_active(found[0].id, False)
        tx.revoke_tokens(found[0].id, now)
        return found[0]
