"""Sign-in checks beyond the password: lockout with back-off, the TOTP second factor, and
the audit of every attempt with the account and the client's address.

- Lockout (api.throttle.LoginLockout, in the database): after ``login_lockout_after`` failures
  the account is locked for ``login_lockout_base_s``, doubling per lockout up to
  ``login_lockout_max_s``. While locked, the password is not checked (429 + Retry-After).
- TOTP (RFC 6238 via pyotp, 30 s steps, one step of clock drift): required for a user who
  enrolled (``carepath users mfa EMAIL``), or for everyone with ``CAREPATH_REQUIRE_TOTP``; a
  code is accepted once (the step is recorded: no replay).
- Audit: ``auth.login`` ``denied`` / ``locked`` / ``ok`` and ``auth.lockout`` rows carry the
  account (the user id when the email is a user's; otherwise ``account=`` and a keyed hash of
  the email, never the typed text) and the address (api.audit.address_var).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pyotp

from carepath.api.audit import AuditEvent, record_event
from carepath.api.auth import AccountError, normalise_email
from carepath.api.records import User
from carepath.api.throttle import account_key

__all__ = ["SignInGate", "totp_now_ok"]

TOTP_WINDOW = 1  # steps of clock drift accepted either side


def totp_now_ok(secret: str, code: str, now: datetime) -> int | None:
    """The time step the code belongs to, if it is valid now (None otherwise)."""
    if not (len(code) == 6 and code.isdigit()):
        return None
    totp = pyotp.TOTP(secret)
    step = int(now.timestamp()) // totp.interval
    for offset in range(-TOTP_WINDOW, TOTP_WINDOW + 1):
        at = (step + offset) * totp.interval
        if pyotp.utils.strings_equal(totp.at(at), code):
            return step + offset
    return None


class SignInGate:
    def __init__(self, rt: Any, email: str, request_id: str) -> None:
        self.rt = rt
        self.request_id = request_id
        try:
            self.email = normalise_email(email)
        except AccountError:
            self.email = email.strip().lower()[:254]
        self.key = account_key(rt.secret, self.email)
        self.h = getattr(rt, "hardening", None)
        self._user: User | None = None
        self._looked_up = False
        self._second_factor_missing = False

    # lockout

    def locked_for(self, now: datetime) -> int:
        if self.h is None:
            return 0
        state = self.h.lockout.check(self.key, now)
        if state.locked_for_s:
            self._audit("auth.login", "locked", f"retry_after_s={state.locked_for_s}")
        return state.locked_for_s

    def failed(self, now: datetime) -> None:
        detail = "second factor missing or wrong" if self._second_factor_missing else None
        self._audit("auth.login", "denied", detail)
        if self.h is None:
            return
        state = self.h.lockout.failed(self.key, now)
        if state.locked_for_s:
            self._audit(
                "auth.lockout", "locked", f"locked_for_s={state.locked_for_s} lockouts={state.lockouts}"
            )

    def succeeded(self) -> None:
        if self.h is not None:
            self.h.lockout.succeeded(self.key)

    @staticmethod
    def locked_message(seconds: int) -> str:
        minutes = max(1, round(seconds / 60))
        return f"Too many failed sign-ins for this account. Try again in about {minutes} minute(s)."

    def failure_message(self) -> str:
        if self._second_factor_missing:
            return "Email, password or authenticator code is incorrect."
        return "Email or password is incorrect."

    # second factor

    def second_factor_ok(self, result: tuple[User, str], code: Any, now: datetime) -> bool:
        user = result[0]
        with self.rt.db.transaction(readonly=True) as tx:
            secret, enabled, _ = tx.totp_of(user.id)
        required = enabled or bool(getattr(self.rt.settings, "require_totp", False))
        if not required:
            return True
        self._second_factor_missing = True
        step = totp_now_ok(secret, str(code or "").strip(), now) if secret and enabled else None
        if step is None:
            self._discard_session(result[1], now)
            return False
        with self.rt.db.transaction() as tx:
            fresh = tx.use_totp_step(user.id, step)
        if not fresh:
            self._discard_session(result[1], now)
            return False
        self._second_factor_missing = False
        return True

    def _discard_session(self, token: str, now: datetime) -> None:
        from carepath.api.auth import logout

        logout(self.rt.db, token, now)

    # audit

    def _account(self) -> User | None:
        if not self._looked_up:
            self._looked_up = True
            with self.rt.db.transaction(readonly=True) as tx:
                found = tx.user_with_hash(self.email)
            self._user = found[0] if found else None
        return self._user

    def _audit(self, action: str, outcome: str, detail: str | None) -> None:
        user = self._account()
        account = f"account={self.key[:16]}"
        event = AuditEvent(
            action,
            outcome,
            self.request_id,
            actor_id=user.id if user else None,
            org_id=user.org_id if user else None,
            detail=f"{account} {detail}" if detail else account,
        )
        record_event(self.rt.audit, self.rt.db, event)
