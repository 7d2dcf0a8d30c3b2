"""Request guards: what an unauthenticated client controls is bounded before any route runs.

One pure-ASGI middleware (inside api.middleware.ServiceMiddleware, so its answers carry the
security headers, the request id and an access line):

- header fields per request (431); the size of the head itself is bounded by the HTTP
  protocol (api.http_protocol: 431 past ``max_header_bytes``, 408 past ``header_timeout_s``);
- requests per second per client address (429 + Retry-After), and a lower rate for requests
  that carry no credentials at all;
- the body: ``Content-Length`` or the bytes actually sent past ``max_body_bytes`` (413); a body
  that stalls longer than ``body_idle_timeout_s`` or takes longer than ``body_timeout_s`` (408);
- hostile input in JSON and form bodies and in the query string, refused with 422 naming the
  field, never echoing it: nesting deeper than ``max_json_depth``, NUL characters (PostgreSQL
  cannot store them), lone UTF-16 surrogates (no UTF-8 encoding exists for them);
- the client's address for the audit trail (api.audit.address_var);
- Strict-Transport-Security on HTTPS requests, or on all when ``hsts`` is set (behind a proxy).
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from carepath.api.audit import address_var
from carepath.api.settings import SESSION_COOKIE, Settings
from carepath.api.throttle import TokenBuckets

__all__ = ["GuardMiddleware", "HostileInput", "check_json", "check_text", "HSTS"]

HSTS = "max-age=31536000; includeSubDomains"
_SURROGATE = re.compile("[\ud800-\udfff]")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class HostileInput(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def check_text(value: str, field: str) -> None:
    if "\x00" in value:
        raise HostileInput(field, "must not contain NUL characters")
    if _SURROGATE.search(value):
        raise HostileInput(field, "must not contain unpaired UTF-16 surrogates (not valid Unicode text)")


def check_json(raw: bytes, max_depth: int) -> None:
    """Raise HostileInput for JSON too deep or holding NUL / lone surrogates. Not JSON at all:
    nothing to say here (the route answers with its own, precise message)."""
    try:
        doc = json.loads(raw)
    except RecursionError:
        raise HostileInput("body", f"is nested deeper than {max_depth} levels") from None
    except ValueError:
        return
    stack: list[tuple[Any, str, int]] = [(doc, "body", 1)]
    while stack:
        node, path, depth = stack.pop()
        if isinstance(node, str):
            check_text(node, path)
            continue
        if not isinstance(node, dict | list):
            continue
        if depth > max_depth:
            raise HostileInput("body", f"is nested deeper than {max_depth} levels")
        if isinstance(node, dict):
            for key, value in node.items():
                check_text(key, f"{path} (a key)")
                stack.append((value, f"{path}.{_safe_key(key)}", depth + 1))
        else:
            stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(node))


def _safe_key(key: str) -> str:
    """A field name fit to appear in an error: short, printable, no data-like content."""
    return key if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", key) else "(key)"


def _is_json(ctype: str, body: bytes) -> bool:
    base = ctype.split(";", 1)[0].strip().lower()
    if base == "application/json" or base.endswith("+json"):
        return True
    return not base and body.lstrip()[:1] in (b"{", b"[")


class _Reject(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        problems: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}
        self.problems = problems


class GuardMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.s = settings
        self.per_ip = TokenBuckets(settings.rate_per_ip)
        self.anonymous = TokenBuckets(settings.rate_anonymous_per_ip)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        address = (scope.get("client") or ("-", 0))[0] or "-"
        token = address_var.set(address)
        hsts = self.s.hsts or scope.get("scheme") == "https"
        started = {"sent": False}

        async def send_guarded(message: Message) -> None:
            if message["type"] == "http.response.start":
                started["sent"] = True
                if hsts:
                    message["headers"] = [
                        *message.get("headers", []),
                        (b"strict-transport-security", HSTS.encode()),
                    ]
            await send(message)

        try:
            self._check_head(scope, address)
            if scope.get("method") in _BODY_METHODS:
                receive = await self._checked_body(scope, receive)
            await self.app(scope, receive, send_guarded)
        except _Reject as r:
            if not started["sent"]:
                await _answer(send_guarded, scope, r)
        finally:
            address_var.reset(token)

    def _check_head(self, scope: Scope, address: str) -> None:
        headers = scope.get("headers", [])
        if len(headers) > self.s.max_headers:
            raise _Reject(431, "too_many_headers", f"At most {self.s.max_headers} header fields per request.")
        wait = self.per_ip.take(address)
        if not wait and not _has_credentials(headers):
            wait = self.anonymous.take(address)
        if wait:
            retry = str(max(1, int(wait + 0.999)))
            raise _Reject(
                429, "rate_limited", "Too many requests from this address; slow down.", {"Retry-After": retry}
            )
        query = scope.get("query_string", b"")
        if query:
            try:
                pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True, errors="strict")
            except (UnicodeDecodeError, ValueError):
                raise _Reject(400, "bad_query", "The query string is not valid UTF-8 text.") from None
            for name, value in pairs:
                try:
                    check_text(value, f"query.{_safe_key(name)}")
                    check_text(name, "query (a parameter name)")
                except HostileInput as h:
                    raise _Reject(422, "invalid_request", h.message, problems=[_problem(h)]) from None

    async def _checked_body(self, scope: Scope, receive: Receive) -> Receive:
        headers = dict(scope.get("headers", []))
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.s.max_body_bytes
            except ValueError:
                raise _Reject(400, "bad_request", "Content-Length is not a number.") from None
            if too_big:
                raise _Reject(413, "too_large", f"The body is larger than {self.s.max_body_bytes} bytes.")
        body, tail = await self._read_body(receive)
        ctype = headers.get(b"content-type", b"").decode("latin-1")
        try:
            if _is_json(ctype, body):
                check_json(body, self.s.max_json_depth)
            elif ctype.lower().startswith("application/x-www-form-urlencoded"):
                for name, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
                    check_text(value, f"form.{_safe_key(name)}")
        except HostileInput as h:
            raise _Reject(422, "invalid_request", h.message, problems=[_problem(h)]) from None
        replayed = {"done": False}

        async def replay() -> Message:
            if not replayed["done"]:
                replayed["done"] = True
                return {"type": "http.request", "body": body, "more_body": False}
            if tail is not None:
                return tail
            return await receive()

        return replay

    async def _read_body(self, receive: Receive) -> tuple[bytes, Message | None]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.s.body_timeout_s
        chunks: list[bytes] = []
        size = 0
        while True:
            wait = min(self.s.body_idle_timeout_s, deadline - loop.time())
            try:
                message = await asyncio.wait_for(receive(), timeout=max(0.0, wait))
            except TimeoutError:
                raise _Reject(408, "request_timeout", "The request body arrived too slowly.") from None
            if message["type"] != "http.request":
                return b"".join(chunks), message  # disconnect: the app hears it after the body
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.s.max_body_bytes:
                raise _Reject(413, "too_large", f"The body is larger than {self.s.max_body_bytes} bytes.")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), None


def _has_credentials(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"authorization" or (name == b"cookie" and SESSION_COOKIE.encode() in value):
            return True
    return False


def _problem(h: HostileInput) -> dict[str, str]:
    return {"field": h.field, "message": h.message}


async def _answer(send: Send, scope: Scope, r: _Reject) -> None:
    rid = str((scope.get("state") or {}).get("request_id", "-"))
    body: dict[str, Any] = {"errors": r.problems} if r.problems else {"error": r.code, "message": r.message}
    body["request_id"] = rid
    raw = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(raw)).encode()),
        *[(k.lower().encode(), v.encode()) for k, v in r.headers.items()],
    ]
    if r.status in (408, 413, 431):
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": r.status, "headers": headers})
    await send({"type": "http.response.body", "body": raw})
