"""Rates and lockouts: token buckets per client address and per account, sign-in lockout with
exponential back-off, and the summary of anonymous noise.

- Buckets live in the worker process (with ``--workers N`` each worker allows the rate: the
  limits are per worker, and documented as such). Keys are bounded: the least recently used
  are forgotten past ``max_keys``, so a flood of addresses cannot grow memory.
- Sign-in lockout is in the database (``login_failures``), shared by every worker and kept
  across restarts: after ``login_lockout_after`` failures the account is locked for
  ``login_lockout_base_s``, doubling with every further lockout up to ``login_lockout_max_s``;
  a success clears it. While locked, the password is not even checked. The account is keyed
  by a hash of the normalised email, so unknown emails are throttled the same way (no hint
  which accounts exist) and no typed-in text is stored.
- Anonymous attempts on patient-data routes: the first per (action, outcome, address) in each
  window is audited as usual; the rest are counted and written as ONE ``audit.anonymous_summary``
  row per key and window (with the count), instead of one row per request.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from carepath.api.db import Database

__all__ = [
    "TokenBuckets",
    "LoginLockout",
    "LockoutState",
    "AnonymousNoise",
    "account_key",
]


class TokenBuckets:
    """``rate`` tokens per second, ``burst`` at most, per key; ``take`` -> seconds to wait (0: go)."""

    def __init__(self, rate: float, burst: float | None = None, max_keys: int = 50_000) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, 2 * rate)
        self.max_keys = max_keys
        self._state: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> float:
        if self.rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._state.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            wait = 0.0
            if tokens >= 1:
                tokens -= 1
            else:
                wait = (1 - tokens) / self.rate
            self._state[key] = (tokens, now)
            while len(self._state) > self.max_keys:
                self._state.popitem(last=False)
            return wait


def account_key(secret: bytes, email: str) -> str:
    return hashlib.sha256(secret + b"\nlogin\n" + email.strip().lower().encode()).hexdigest()


@dataclass(frozen=True)
class LockoutState:
    locked_for_s: int  # 0: not locked
    failures: int
    lockouts: int


class LoginLockout:
    def __init__(self, db: Database, after: int, base_s: int, max_s: int) -> None:
        self.db = db
        self.after, self.base_s, self.max_s = after, base_s, max_s

    def check(self, key: str, now: datetime) -> LockoutState:
        with self.db.transaction(readonly=True) as tx:
            found = tx.login_failure(key)
        if found is None:
            return LockoutState(0, 0, 0)
        failures, lockouts, until = found
        left = math.ceil((until - now).total_seconds()) if until is not None else 0
        return LockoutState(max(0, left), failures, lockouts)

    def failed(self, key: str, now: datetime) -> LockoutState:
        """Count a failure; lock (longer each time) once ``after`` failures are reached."""
        with self.db.transaction() as tx:
            failures, lockouts, until = tx.login_failure(key) or (0, 0, None)
            failures += 1
            locked_for = 0
            if failures >= self.after:
                locked_for = min(self.max_s, self.base_s * 2**lockouts)
                lockouts, failures, until = lockouts + 1, 0, now + timedelta(seconds=locked_for)
            tx.put_login_failure(key, failures, lockouts, until, now)
        return LockoutState(locked_for, failures, lockouts)

    def succeeded(self, key: str) -> None:
        with self.db.transaction() as tx:
            tx.clear_login_failures(key)


class AnonymousNoise:
    """Decides which anonymous attempts get their own audit row; counts the others."""

    def __init__(self, window_s: float, max_keys: int = 10_000, clock: Callable[[], float] = time.monotonic):
        self.window_s = window_s
        self.max_keys = max_keys
        self.clock = clock
        self._counts: dict[tuple[str, str, str], list[float]] = {}  # key -> [window start, extra count]
        self._lock = threading.Lock()

    def admit(self, action: str, outcome: str, address: str) -> bool:
        """True: write this attempt's row now. False: it was counted for the next summary."""
        now = self.clock()
        with self._lock:
            key = (action, outcome, address)
            if key not in self._counts and len(self._counts) >= self.max_keys:
                key = (action, outcome, "(many addresses)")  # memory stays bounded
            entry = self._counts.get(key)
            if entry is not None and (now - entry[0] < self.window_s or entry[1]):
                entry[1] += 1  # inside the window (or a finished one not yet summarised)
                return False
            self._counts[key] = [now, 0]
            return True

    def due(self, force: bool = False) -> list[tuple[str, str, str, int, float]]:
        """(action, outcome, address, count, window seconds) for every window that is over."""
        now = self.clock()
        out = []
        with self._lock:
            for key, (start, count) in list(self._counts.items()):
                if force or now - start >= self.window_s:
                    if count:
                        out.append((*key, int(count), now - start))
                    del self._counts[key]
        return out
