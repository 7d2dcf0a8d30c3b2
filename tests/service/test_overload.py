"""Graceful overload (api/overload.py): bounded concurrency, a bounded queue, fast 503 with
Retry-After beyond it; work for a disconnected client abandoned, not stored; no 500s.

The middleware is driven directly over ASGI (a fake app whose requests block until released,
so the counts are exact), then through a real server with a slow engine (a real client that
gives up mid-evaluation)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from typing import Any

import httpx
import pytest

from carepath.api.overload import (
    CLIENT_CLOSED_REQUEST,
    ClientGone,
    OverloadLimiter,
    OverloadPolicy,
    client_gone,
)

# --- over ASGI, with a fake app ----------------------------------------------------------------


class BlockingApp:
    """Every request waits for ``release`` (or records whether its client left)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.inside = 0
        self.most_inside = 0
        self.saw_gone: list[bool] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.inside += 1
        self.most_inside = max(self.most_inside, self.inside)
        try:
            await receive()  # the body
            await self.release.wait()
            self.saw_gone.append(client_gone())
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
        finally:
            self.inside -= 1


def _scope(path: str = "/v1/plans") -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": path, "headers": []}


async def _call(app: Any, path: str = "/v1/plans", disconnect: asyncio.Event | None = None) -> dict[str, Any]:
    sent: list[dict[str, Any]] = []
    body_sent = False

    async def receive() -> dict[str, Any]:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": b"{}", "more_body": False}
        await (disconnect or asyncio.Event()).wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    started = time.perf_counter()
    await app(_scope(path), receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    return {
        "status": start["status"],
        "headers": dict(start.get("headers", [])),
        "body": b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"),
        "seconds": time.perf_counter() - started,
    }


def test_beyond_concurrency_and_queue_requests_get_a_fast_503_with_retry_after():
    async def scenario() -> tuple[list[dict[str, Any]], BlockingApp]:
        inner = BlockingApp()
        app = OverloadLimiter(inner, OverloadPolicy(max_concurrency=2, max_queue=3, queue_timeout_s=30))
        tasks = [asyncio.create_task(_call(app)) for _ in range(8)]
        await asyncio.sleep(0.2)  # 2 inside, 3 queued, 3 refused at once
        done_early = [t for t in tasks if t.done()]
        assert len(done_early) == 3
        assert inner.inside == 2
        inner.release.set()
        return list(await asyncio.gather(*tasks)), inner

    results, inner = asyncio.run(scenario())
    statuses = sorted(r["status"] for r in results)
    assert statuses == [200] * 5 + [503] * 3
    assert inner.most_inside == 2  # never more than max_concurrency in the app
    for r in results:
        if r["status"] == 503:
            assert r["headers"][b"retry-after"] == b"1"
            assert json.loads(r["body"])["error"] == "overloaded"
            assert r["seconds"] < 0.15  # refused at once, not after waiting (generous bound)


def test_a_queued_request_gives_up_after_the_queue_timeout():
    async def scenario() -> list[dict[str, Any]]:
        inner = BlockingApp()
        app = OverloadLimiter(inner, OverloadPolicy(max_concurrency=1, max_queue=5, queue_timeout_s=0.2))
        first = asyncio.create_task(_call(app))
        await asyncio.sleep(0.05)
        queued = await _call(app)
        inner.release.set()
        return [await first, queued]

    first, queued = asyncio.run(scenario())
    assert first["status"] == 200
    assert queued["status"] == 503 and queued["seconds"] > 0.15


def test_a_released_slot_passes_to_the_oldest_waiter_and_the_count_returns_to_zero():
    async def scenario() -> OverloadLimiter:
        inner = BlockingApp()
        app = OverloadLimiter(inner, OverloadPolicy(max_concurrency=1, max_queue=10, queue_timeout_s=10))
        tasks = [asyncio.create_task(_call(app)) for _ in range(6)]
        await asyncio.sleep(0.05)
        inner.release.set()
        results = await asyncio.gather(*tasks)
        assert [r["status"] for r in results] == [200] * 6
        assert inner.most_inside == 1
        return app

    app = asyncio.run(scenario())
    assert app.active == 0 and not app.waiting


def test_a_request_that_would_wait_longer_than_the_queue_allows_is_refused_at_once():
    async def scenario() -> tuple[list[int], BlockingApp]:
        inner = BlockingApp()
        app = OverloadLimiter(inner, OverloadPolicy(max_concurrency=1, max_queue=10, queue_timeout_s=5))
        app.service_s = 2.0  # recent requests took 2 s each
        tasks = [asyncio.create_task(_call(app)) for _ in range(4)]
        await asyncio.sleep(0.1)
        early = [t.result()["status"] for t in tasks if t.done()]
        inner.release.set()
        await asyncio.gather(*tasks)
        return early, inner

    early, inner = asyncio.run(scenario())
    # one inside, two queued (expected waits 2 s and 4 s), the fourth (6 s) refused at once
    assert early == [503]
    assert inner.most_inside == 1


@pytest.mark.parametrize("path", ["/health", "/static/carepath.css"])
def test_health_and_static_files_are_never_queued_or_refused(path: str):
    async def scenario() -> list[int]:
        inner = BlockingApp()
        app = OverloadLimiter(inner, OverloadPolicy(max_concurrency=1, max_queue=0, queue_timeout_s=1))
        blocker = asyncio.create_task(_call(app))
        await asyncio.sleep(0.05)
        refused = await _call(app)
        exempt = asyncio.create_task(_call(app, path))
        await asyncio.sleep(0.05)
        inner.release.set()
        return [refused["status"], (await exempt)["status"], (await blocker)["status"]]

    assert asyncio.run(scenario()) == [503, 200, 200]


def test_the_app_learns_that_its_client_left_after_the_body_was_read():
    async def scenario() -> BlockingApp:
        inner = BlockingApp()
        app = OverloadLimiter(inner, OverloadPolicy(max_concurrency=2, max_queue=0))
        left, stayed = asyncio.Event(), asyncio.Event()
        t1 = asyncio.create_task(_call(app, disconnect=left))
        t2 = asyncio.create_task(_call(app, disconnect=stayed))
        await asyncio.sleep(0.05)
        left.set()
        await asyncio.sleep(0.05)
        inner.release.set()
        await asyncio.gather(t1, t2)
        return inner

    assert sorted(asyncio.run(scenario()).saw_gone) == [False, True]


def test_client_gone_is_answered_499_not_an_unhandled_error():
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise ClientGone()

    result = asyncio.run(_call(OverloadLimiter(app, OverloadPolicy())))
    assert result["status"] == CLIENT_CLOSED_REQUEST
    assert client_gone() is False  # outside a request


# --- a real server ------------------------------------------------------------------------------


class SlowEngine:
    """The real engine, slowed down, so a client can give up while its plan is evaluated."""

    def __init__(self, real: Any, seconds: float) -> None:
        self.pack = real.pack
        self.real = real
        self.seconds = seconds
        self.calls = 0

    def evaluate(self, intake: Any, generated_at: Any) -> Any:
        self.calls += 1
        time.sleep(self.seconds)
        return self.real.evaluate(intake, generated_at)


def _count(srv: Any, sql: str) -> int:
    import sqlalchemy as sa

    with srv.runtime.db.engine.connect() as conn:
        return int(conn.execute(sa.text(sql)).scalar_one())


def _post_and_hang_up(url: str, token: str, body: bytes, until: Any) -> None:
    """A raw HTTP client that sends the whole request, then disconnects before the answer
    (once ``until()`` is true, or after 20 s)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as s:
        head = (
            f"POST /v1/plans HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        s.sendall(head.encode() + body)
        deadline = time.monotonic() + 20
        while not until() and time.monotonic() < deadline:
            time.sleep(0.01)


def test_a_plan_for_a_client_that_hung_up_is_neither_evaluated_twice_nor_stored(
    serve_app, engine, example_intake, caplog
):
    slow = SlowEngine(engine, 0.6)
    with serve_app(engine=slow) as srv:
        from tests.service.helpers import make_users

        srv.users = make_users(srv.runtime.db)
        body = json.dumps(example_intake).encode()
        # hang up while the plan is being evaluated
        _post_and_hang_up(srv.url, srv.users.clinician.token, body, until=lambda: slow.calls == 1)
        deadline = time.monotonic() + 20
        while (
            _count(srv, "SELECT count(*) FROM audit_log WHERE outcome = 'abandoned'") == 0
            and time.monotonic() < deadline
        ):
            time.sleep(0.1)
        assert slow.calls == 1
        assert _count(srv, "SELECT count(*) FROM plans") == 0
        assert _count(srv, "SELECT count(*) FROM audit_log WHERE outcome = 'abandoned'") == 1
        # and a client that waits still gets its plan
        with srv.client() as c:
            r = c.post("/v1/plans", content=body, headers=srv.users.clinician.headers)
        assert r.status_code == 201
        assert _count(srv, "SELECT count(*) FROM plans") == 1
    assert not [r for r in caplog.records if "unhandled" in r.getMessage()]


def test_a_real_server_past_its_limit_sheds_with_503_and_never_500(
    serve_app, settings_for, sqlite_url, engine, example_intake
):
    from carepath.api.app import create_app
    from tests.service.helpers import ThreadServer, make_users

    settings = settings_for(sqlite_url, max_concurrency=1, max_queue=1, queue_timeout_s=5)
    with ThreadServer(create_app(settings, engine=SlowEngine(engine, 0.3))) as srv:
        users = make_users(srv.runtime.db)
        body = json.dumps(example_intake).encode()
        results: list[httpx.Response] = []

        def post() -> None:
            with httpx.Client(base_url=srv.url, timeout=30) as c:
                results.append(c.post("/v1/plans", content=body, headers=users.clinician.headers))

        threads = [threading.Thread(target=post) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    statuses = sorted(r.status_code for r in results)
    assert 500 not in statuses
    assert statuses.count(201) >= 2 and statuses.count(503) >= 1, statuses
    for r in results:
        if r.status_code == 503:
            assert r.headers["retry-after"] == "1"
            assert r.headers["x-request-id"]  # inside ServiceMiddleware: headers, access log
            assert r.headers["x-content-type-options"] == "nosniff"


def test_two_processes_writing_one_sqlite_file_take_turns_without_lock_errors(tmp_path):
    """The writer queue (flock) between processes: many short write transactions from two
    processes at once, none refused with 'database is locked'."""
    import subprocess
    import sys

    from carepath.api.db import Database

    url = f"sqlite:///{tmp_path / 'carepath.sqlite3'}"
    db = Database(url)
    db.upgrade()
    db.dispose()
    script = f"""
import sys
from datetime import datetime, UTC
from carepath.api.db import Database
db = Database({url!r}, sqlite_busy_timeout_ms=2000)
for i in range(150):
    with db.transaction() as tx:
        tx.add_org(f"org-{{sys.argv[1]}}-{{i}}", "x", datetime.now(UTC))
"""
    run = [sys.executable, "-c", script]
    procs = [subprocess.Popen([*run, str(n)], stderr=subprocess.PIPE) for n in range(2)]
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    db = Database(url)
    with db.transaction(readonly=True) as tx:
        n = tx.conn.exec_driver_sql("SELECT count(*) FROM organisations").scalar()
    db.dispose()
    assert n == 300
