"""One pure-ASGI middleware for every response: request id, security headers, access log,
and the last-resort 500 (generic body; the exception's class is logged, never its message,
and it is not re-raised, so no server traceback can print data either).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from carepath.api.logs import access_log, request_id_var

__all__ = ["ServiceMiddleware", "SECURITY_HEADERS", "DEFAULT_CSP"]

log = logging.getLogger("carepath.errors")

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")

DEFAULT_CSP = (
    "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"
)
SECURITY_HEADERS: dict[str, str] = {
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
    "pragma": "no-cache",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}


class ServiceMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = rid
        token = request_id_var.set(rid)
        started = time.perf_counter()
        status = {"code": 500, "sent": False}

        async def send_wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["sent"] = message["status"], True
                message["headers"] = _with_security_headers(message.get("headers", []), rid)
            await send(message)

        try:
            await self.app(scope, receive, send_wrapped)
        except Exception as exc:  # noqa: BLE001 - the generic 500 lives here
            log.error("unhandled %s in %s %s", type(exc).__name__, scope.get("method"), _route(scope))
            if not status["sent"]:
                await _send_500(send_wrapped, rid)
        finally:
            user = (scope.get("state") or {}).get("user_id", "-")
            access_log.info(
                "%s %s %s %.1fms user=%s",
                scope.get("method"),
                _route(scope),
                status["code"],
                (time.perf_counter() - started) * 1000,
                user,
            )
            request_id_var.reset(token)


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = str(value.decode("latin-1"))
            if _SAFE_ID.match(text):
                return text
    return uuid.uuid4().hex


def _route(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None) or getattr(route, "path_format", None)
    return str(path) if path else "(no route)"


def _with_security_headers(headers: Any, rid: str) -> list[tuple[bytes, bytes]]:
    out = [(k, v) for k, v in headers if k.lower() not in (b"cache-control", b"pragma", b"x-request-id")]
    present = {k.lower() for k, _ in out}
    if b"content-security-policy" not in present:
        out.append((b"content-security-policy", DEFAULT_CSP.encode()))
    for k, v in SECURITY_HEADERS.items():
        if k.encode() not in present or k in ("cache-control", "pragma"):
            out.append((k.encode(), v.encode()))
    out.append((b"x-request-id", rid.encode()))
    return out


async def _send_500(send: Send, rid: str) -> None:
    body = json.dumps(
        {
            "error": "internal_error",
            "message": "The server could not complete the request. Quote the request id when reporting this.",
            "request_id": rid,
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 500,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
