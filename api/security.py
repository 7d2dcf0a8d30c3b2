"""Secrets in and out: password hashes (argon2id), API and session tokens (only their SHA-256
is stored), and CSRF tokens for cookie-authenticated forms.

CSRF scheme (synchronizer token derived, not stored): a logged-in browser's token is
``HMAC(secret_key, "csrf:" + session token)``; before login the ``/login`` form uses a
signed double-submit cookie (``HMAC(secret_key, "login:" + random cookie)``). Unsafe requests
authenticated by the session cookie must carry the token in the ``X-CSRF-Token`` header or a
``csrf_token`` form field. Bearer-token requests carry no ambient credentials and need none.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = [
    "hash_password",
    "verify_password",
    "needs_rehash",
    "new_api_token",
    "new_session_token",
    "token_sha256",
    "csrf_for_session",
    "csrf_for_login",
    "csrf_matches",
    "MIN_PASSWORD_LENGTH",
    "TOKEN_PREFIX",
]

MIN_PASSWORD_LENGTH = 12
TOKEN_PREFIX = "cpt_"
_HASHER = PasswordHasher()  # argon2id with the library's current recommended parameters


@cache
def _dummy_hash() -> str:
    """Verified against when the user is unknown, so both paths cost the same (built lazily)."""
    return _HASHER.hash("carepath-timing-equaliser")


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Constant work whether or not the user exists (pass None for an unknown user)."""
    try:
        return _HASHER.verify(password_hash or _dummy_hash(), password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _HASHER.check_needs_rehash(password_hash)


def new_api_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_session_token() -> str:
    return secrets.token_urlsafe(32)


def token_sha256(token: str) -> str:
    """Tokens carry 256 bits of randomness, so a plain SHA-256 is a safe stored form."""
    return hashlib.sha256(token.encode()).hexdigest()


def _mac(secret: bytes, purpose: str, value: str) -> str:
    return hmac.new(secret, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


def csrf_for_session(secret: bytes, session_token: str) -> str:
    return _mac(secret, "csrf", session_token)


def csrf_for_login(secret: bytes, login_cookie: str) -> str:
    return _mac(secret, "login", login_cookie)


def csrf_matches(expected: str, submitted: str | None) -> bool:
    return bool(submitted) and hmac.compare_digest(expected.encode(), str(submitted).encode())
