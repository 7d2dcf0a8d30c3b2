"""Limits on what an unauthenticated client controls (api.http_protocol, api.guard,
api.pdf_pool, api.throttle): every one of these was unbounded in the review.

Header size and count, slow heads and bodies, body size, requests per address and per
account, the PDF pool (503 + Retry-After), and the server's memory under floods of huge
headers and stalled bodies (RSS of a real `carepath serve` process, read from /proc).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.service.helpers import ProcessServer, ThreadServer, make_users


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _raw(port: int, data: bytes, read_timeout: float = 10.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as s:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(data)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return out


@pytest.fixture
def limited(settings_for, sqlite_url, engine):
    def start(**limits) -> ThreadServer:
        from carepath.api.app import create_app

        return ThreadServer(create_app(settings_for(sqlite_url, **limits), engine=engine))

    return start


def test_a_head_larger_than_the_limit_is_431_and_closed(limited):
    with limited(max_header_bytes=8192) as srv:
        big = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n"
        assert _raw(srv.port, big).startswith(b"HTTP/1.1 431")
        ok = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Small: " + b"a" * 2_000 + b"\r\nConnection: close\r\n\r\n"
        assert _raw(srv.port, ok).startswith(b"HTTP/1.1 200")


def test_too_many_header_fields_is_431(limited):
    with limited(max_headers=20) as srv:
        headers = {f"x-h{i}": "1" for i in range(25)}
        r = httpx.get(srv.url + "/health", headers=headers)
        assert r.status_code == 431 and r.json()["error"] == "too_many_headers"
        assert httpx.get(srv.url + "/health", headers={"x-h1": "1"}).status_code == 200


def test_a_slow_head_is_408_and_closed(limited):
    with limited(header_timeout_s=1.0) as srv:
        started = time.monotonic()
        out = _raw(srv.port, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: a", read_timeout=15)
        assert out.startswith(b"HTTP/1.1 408") and time.monotonic() - started < 10


def test_an_oversized_body_is_413_before_it_is_read(limited):
    with limited(max_body_bytes=10_000) as srv:
        users = make_users(srv.runtime.db)
        r = httpx.post(
            srv.url + "/v1/plans", content=b"{" + b" " * 20_000 + b"}", headers=users.clinician.headers
        )
        assert r.status_code == 413 and r.json()["error"] == "too_large"

        def chunks():
            for _ in range(30):
                yield b" " * 1000

        r = httpx.post(srv.url + "/v1/plans", content=chunks(), headers=users.clinician.headers)
        assert r.status_code == 413


def test_a_stalled_body_is_408(limited):
    with limited(body_idle_timeout_s=1.0, body_timeout_s=3.0) as srv:
        head = (
            b"POST /v1/plans HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 500\r\n\r\n"
        )
        started = time.monotonic()
        out = _raw(srv.port, head + b'{"assessment_date": ', read_timeout=15)
        assert out.startswith(b"HTTP/1.1 408") and time.monotonic() - started < 10


def test_requests_per_address_are_rate_limited_with_retry_after(limited):
    with limited(rate_per_ip=5.0, rate_anonymous_per_ip=5.0) as srv:
        with httpx.Client(base_url=srv.url) as c:
            codes = [c.get("/health").status_code for _ in range(30)]
        assert 429 in codes and codes[0] == 200
        with httpx.Client(base_url=srv.url) as c:
            r = [c.get("/health") for _ in range(20)][-1]
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1


def test_requests_per_account_are_rate_limited(limited):
    with limited(rate_per_account=3.0) as srv:
        users = make_users(srv.runtime.db)
        with httpx.Client(base_url=srv.url) as c:
            codes = [c.get("/session", headers=users.clinician.headers).status_code for _ in range(20)]
            other = c.get("/session", headers=users.reviewer.headers).status_code
        assert 429 in codes and codes[0] == 200
        assert other == 200  # another account is not affected


def test_the_pdf_pool_answers_503_with_retry_after_when_full(limited, example_intake):
    with limited(pdf_workers=1, pdf_queue=0, retry_after_s=7) as srv:
        users = make_users(srv.runtime.db)
        pid = httpx.post(
            srv.url + "/v1/plans",
            content=json.dumps(example_intake),
            headers=users.clinician.headers,
            timeout=60,
        ).json()["plan_id"]
        pool = srv.runtime.hardening.pdf_pool
        release = threading.Event()
        holder = threading.Thread(target=lambda: asyncio.run(pool.run(lambda: release.wait(30))))
        holder.start()
        while pool.admitted == 0:
            time.sleep(0.01)
        try:
            r = httpx.get(f"{srv.url}/v1/plans/{pid}/report.pdf", headers=users.clinician.headers, timeout=60)
            assert r.status_code == 503 and r.headers["retry-after"] == "7"
            assert r.json()["error"] == "busy"
            assert httpx.get(srv.url + "/health").status_code == 200  # the rest of the service answers
        finally:
            release.set()
            holder.join()
        r = httpx.get(f"{srv.url}/v1/plans/{pid}/report.pdf", headers=users.clinician.headers, timeout=120)
        assert r.status_code in (200, 503) and (
            r.status_code != 503 or r.json()["error"] == "reports_unavailable"
        )


def test_rss_stays_bounded_under_huge_headers_and_stalled_bodies(tmp_path):
    """Ten clients each sending a 50 MB header, and 300 connections stalling mid-body: the
    server's RSS grows by a bounded amount (the review saw 319 -> 904 MB) and /health answers."""
    data = tmp_path / "data"
    env = {"CAREPATH_BODY_IDLE_TIMEOUT_S": "2", "CAREPATH_HEADER_TIMEOUT_S": "2"}
    with ProcessServer(data, env=env) as srv:
        assert httpx.get(srv.url + "/health").status_code == 200
        before = _rss_mb(srv.proc.pid)

        def flood() -> None:
            head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: "
            with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
                try:
                    s.sendall(head)
                    for _ in range(50):
                        s.sendall(b"a" * 1_000_000)
                except OSError:
                    return

        threads = [threading.Thread(target=flood) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stalled = []
        for _ in range(300):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            s.sendall(b"POST /v1/plans HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{")
            stalled.append(s)
        time.sleep(0.5)
        during = _rss_mb(srv.proc.pid)
        started = time.monotonic()
        busy = httpx.get(srv.url + "/health", timeout=30)  # at the concurrency limit: a fast 503
        assert busy.status_code in (200, 503) and time.monotonic() - started < 5
        time.sleep(4)  # the stalled bodies time out (408) and their connections close
        assert httpx.get(srv.url + "/health", timeout=30).status_code == 200
        for s in stalled:
            s.close()
        after = _rss_mb(srv.proc.pid)
    print(f"\nRSS under floods: before {before:.1f} MB, during {during:.1f} MB, after {after:.1f} MB")
    assert during - before < 120, f"RSS {before:.0f} -> {during:.0f} MB during the floods"
    assert after - before < 120, f"RSS {before:.0f} -> {after:.0f} MB after"
