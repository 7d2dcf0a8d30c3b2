"""Graceful overload: bounded concurrency per worker process, a short bounded queue, and a
fast ``503 Service Unavailable`` with ``Retry-After`` beyond it.

Past its knee a server that accepts everything spends its CPU on requests whose clients
have already given up, and completes almost none in time. This pure-ASGI middleware keeps
at most ``max_concurrency`` requests in the app per worker; up to ``max_queue`` more wait
(first come, first served) at most ``queue_timeout_s``; anything beyond is refused at once
with 503 + Retry-After, before its body is read, so a refusal costs microseconds, not a plan.
A request whose expected wait (its place in the queue times the moving average of recent
service times, per slot) already exceeds ``queue_timeout_s`` is refused at once too, so a
503 comes fast instead of after a wait that would have ended the same way.
``/health`` and ``/static/`` are never queued or refused.

Work for a client that disconnected is abandoned, not stored: once the request body has been
read, a watcher waits for the server's ``http.disconnect``; the plan service calls
``client_gone()`` (a context variable, so it works from the worker thread of a sync route)
before it evaluates and again before it writes, and raises ``ClientGone``; the middleware
answers such a request (and a body cut off mid-upload) with status 499 that nobody receives,
so neither becomes an unhandled-error log line.

SQLite lock waits between worker processes that outlast ``busy_timeout`` become 503 +
Retry-After (``DatabaseBusy``), never a 500.

Installed with one line in the app factory: ``install_overload(app, settings)``.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import threading
from collections import deque
from dataclasses import dataclass

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "OverloadLimiter",
    "OverloadPolicy",
    "ClientGone",
    "client_gone",
    "install_overload",
    "OVERLOAD_EXEMPT",
    "CLIENT_CLOSED_REQUEST",
]

log = logging.getLogger("carepath.overload")

OVERLOAD_EXEMPT = frozenset({"/health"})
OVERLOAD_EXEMPT_PREFIXES = ("/static/",)  # the web form's CSS: cheap, and a browser fetches it in parallel
CLIENT_CLOSED_REQUEST = 499  # nginx's status for "the client went away before the answer"

_gone: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar(
    "carepath_client_gone", default=None
)


class ClientGone(Exception):
    """The client disconnected: stop the work, store nothing."""


def client_gone() -> bool:
    """True once this request's client has disconnected (False outside a request)."""
    event = _gone.get()
    return event is not None and event.is_set()


@dataclass(frozen=True)
class OverloadPolicy:
    max_concurrency: int = 4
    max_queue: int = 32
    queue_timeout_s: float = 1.0
    retry_after_s: int = 1

    @property
    def enabled(self) -> bool:
        return self.max_concurrency > 0


class OverloadLimiter:
    """The pure-ASGI middleware. One instance per worker process (its own event loop)."""

    def __init__(self, app: ASGIApp, policy: OverloadPolicy | None = None) -> None:
        self.app = app
        self.policy = policy or OverloadPolicy()
        self.active = 0
        self.waiting: deque[asyncio.Future[None]] = deque()
        self.shed = 0  # refused with 503 since start (for tests and /health-style probes)
        self.service_s = 0.0  # moving average of the time an admitted request spends inside

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            or not self.policy.enabled
            or path in OVERLOAD_EXEMPT
            or path.startswith(OVERLOAD_EXEMPT_PREFIXES)
        ):
            await self.app(scope, receive, send)
            return
        if not await self._acquire():
            self.shed += 1
            await _send_503(send, self.policy.retry_after_s)
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await self._run(scope, receive, send)
        finally:
            self._release()
            self.service_s += 0.2 * (loop.time() - started - self.service_s)

    # -- admission ----------------------------------------------------------------------------

    async def _acquire(self) -> bool:
        if self.active < self.policy.max_concurrency and not self.waiting:
            self.active += 1
            return True
        if len(self.waiting) >= self.policy.max_queue or self._expected_wait() > self.policy.queue_timeout_s:
            return False  # refused now rather than after a wait that would end the same way
        slot: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.append(slot)
        try:
            await asyncio.wait_for(asyncio.shield(slot), self.policy.queue_timeout_s)
            return True  # the releasing request handed its slot over (active unchanged)
        except TimeoutError:
            if slot.done() and not slot.cancelled():
                return True  # handed over just as the wait ran out: keep it
            slot.cancel()
            return False
        except asyncio.CancelledError:
            if slot.done() and not slot.cancelled():
                self._release()
            else:
                slot.cancel()
            raise
        finally:
            if slot in self.waiting:
                self.waiting.remove(slot)

    def _expected_wait(self) -> float:
        """How long a request joining the queue now would likely wait for a slot."""
        return (len(self.waiting) + 1) * self.service_s / self.policy.max_concurrency

    def _release(self) -> None:
        while self.waiting:
            slot = self.waiting.popleft()
            if not slot.done():
                slot.set_result(None)  # the slot passes to the next waiter
                return
        self.active -= 1

    # -- one admitted request -----------------------------------------------------------------

    async def _run(self, scope: Scope, receive: Receive, send: Send) -> None:
        gone = threading.Event()
        token = _gone.set(gone)
        watcher: asyncio.Task[None] | None = None

        async def receive_watched() -> Message:
            nonlocal watcher
            message = await receive()
            if message["type"] == "http.disconnect":
                gone.set()
            elif not message.get("more_body", False) and watcher is None:
                watcher = asyncio.create_task(_watch_disconnect(receive, gone))
            return message

        started = {"sent": False}

        async def send_tracked(message: Message) -> None:
            if message["type"] == "http.response.start":
                started["sent"] = True
            await send(message)

        try:
            await self.app(scope, receive_watched, send_tracked)
        except (ClientGone, ClientDisconnect):
            if not started["sent"]:
                await _send_empty(send, CLIENT_CLOSED_REQUEST)
        finally:
            _gone.reset(token)
            if watcher is not None:
                watcher.cancel()


async def _watch_disconnect(receive: Receive, gone: threading.Event) -> None:
    """After the body: the server's next message is http.disconnect (the client left, or the
    response completed); either way the request's work need not go on for anyone after it."""
    try:
        message = await receive()
    except Exception:  # noqa: BLE001 - a server that cannot say: assume the client is there
        return
    if message["type"] == "http.disconnect":
        gone.set()


_OVERLOADED = json.dumps(
    {
        "error": "overloaded",
        "message": "The service is at capacity. Retry after the number of seconds in Retry-After.",
    }
).encode()


async def _send_503(send: Send, retry_after_s: int) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(_OVERLOADED)).encode()),
                (b"retry-after", str(retry_after_s).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _OVERLOADED})


async def _send_empty(send: Send, status: int) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


def install_overload(app: object, settings: object) -> None:
    """Add the limiter (inside ServiceMiddleware when called before it is added, so 503s get
    the request id, security headers and an access-log line) and the DatabaseBusy handler."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    from carepath.api.db import DatabaseBusy

    assert isinstance(app, FastAPI)
    policy = OverloadPolicy(
        max_concurrency=getattr(settings, "max_concurrency", OverloadPolicy.max_concurrency),
        max_queue=getattr(settings, "max_queue", OverloadPolicy.max_queue),
        queue_timeout_s=getattr(settings, "queue_timeout_s", OverloadPolicy.queue_timeout_s),
        retry_after_s=getattr(settings, "retry_after_s", OverloadPolicy.retry_after_s),
    )
    app.add_middleware(OverloadLimiter, policy=policy)

    async def database_busy(request: Request, exc: Exception) -> JSONResponse:
        log.warning("database busy: a lock wait ran out (%s)", request.scope.get("method", "?"))
        return JSONResponse(
            {"error": "busy", "message": "The database is busy. Retry after the seconds in Retry-After."},
            status_code=503,
            headers={"Retry-After": str(policy.retry_after_s)},
        )

    app.add_exception_handler(DatabaseBusy, database_busy)
