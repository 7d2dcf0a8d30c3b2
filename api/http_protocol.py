"""The HTTP/1.1 protocol ``carepath serve`` runs: uvicorn's h11 protocol with the limits an
unauthenticated client must not be able to push past (the review sent ten 50 MB headers and
the server took them all; httptools, uvicorn's default parser, has no bound on a header).

- the request line and headers together: at most ``max_header_bytes`` (h11's own bound on an
  incomplete event), answered 431 and closed;
- the time to send them: ``header_timeout_s`` from the first byte of a request (408, closed),
  so a client dribbling a header (slowloris) holds nothing for long;
- open connections per worker: past ``max_connections`` a new connection is closed at once
  (requests in flight are bounded separately by uvicorn's ``limit_concurrency``: 503).

Limits come from the settings (``configure``, called by the app factory in each worker).
``uvicorn_options(settings)`` gives everything ``carepath serve`` and the tests pass to uvicorn.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from carepath.api.settings import Settings

__all__ = ["GuardedH11Protocol", "configure", "uvicorn_options", "PROTOCOL"]

PROTOCOL = "carepath.api.http_protocol:GuardedH11Protocol"
_LIMITS = {"max_header_bytes": 16384, "header_timeout_s": 10.0, "max_connections": 1000}


def configure(settings: Settings) -> None:
    _LIMITS.update(
        max_header_bytes=settings.max_header_bytes,
        header_timeout_s=settings.header_timeout_s,
        max_connections=settings.max_connections,
    )


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    configure(settings)
    opts: dict[str, Any] = {
        "http": PROTOCOL,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "limit_concurrency": settings.limit_concurrency,
        "timeout_keep_alive": 5,
        "server_header": False,
        "proxy_headers": bool(settings.forwarded_allow_ips),
        "forwarded_allow_ips": settings.forwarded_allow_ips or None,
    }
    if settings.tls_certfile and settings.tls_keyfile:
        opts.update(ssl_certfile=str(settings.tls_certfile), ssl_keyfile=str(settings.tls_keyfile))
    return opts


class GuardedH11Protocol(H11Protocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > _LIMITS["max_connections"]:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        waiting_for_head = self.conn.their_state == h11.IDLE
        if waiting_for_head:
            buffered = self.conn.trailing_data[0] + data
            end = buffered.find(b"\r\n\r\n")
            if (end if end >= 0 else len(buffered)) > _LIMITS["max_header_bytes"]:
                self._refuse(431, b"Request header fields too large")
                return
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(_LIMITS["header_timeout_s"], self._head_too_slow)
        super().data_received(data)
        if self.conn.their_state != h11.IDLE:
            self._cancel_head_timer()

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.conn.their_state == h11.IDLE and not self.transport.is_closing():
            self._refuse(408, b"Request head not received in time")

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _refuse(self, status: int, reason: bytes) -> None:
        self._cancel_head_timer()
        body = b'{"error":"' + (b"headers_too_large" if status == 431 else b"request_timeout") + b'"}'
        head = (
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n" % (status, reason, len(body))
        )
        if not self.transport.is_closing():
            self.transport.write(head + body)
            self.transport.close()
