"""Honest readiness and the faults it must report: SQLite locked, moved away (never recreated
empty; recovery without restart once it is back), the disk nearly full, the database down
(PostgreSQL stopped = a port that refuses), a broken rule pack at startup (no traceback)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import httpx
import pytest

from tests.service.helpers import ROOT, ThreadServer, make_users


@pytest.fixture
def start(settings_for, sqlite_url, engine):
    def make(url: str | None = None, **extra) -> ThreadServer:
        from carepath.api.app import create_app

        return ThreadServer(create_app(settings_for(url or sqlite_url, **extra), engine=engine))

    return make


def test_health_checks_a_real_round_trip_and_reports_each_check(start):
    with start() as srv:
        r = httpx.get(srv.url + "/health")
    assert r.status_code == 200
    assert r.json()["checks"] == {"database": "ok", "disk": "ok", "audit": "ok"}


def test_a_locked_sqlite_file_is_not_ready(start, sqlite_url):
    with start() as srv:
        path = sqlite_url.removeprefix("sqlite:///")
        other = sqlite3.connect(path, isolation_level=None, timeout=1)
        other.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        try:
            r = httpx.get(srv.url + "/health", timeout=30)
            assert r.status_code == 503 and r.json()["checks"]["database"] in ("locked", "unreachable")
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert httpx.get(srv.url + "/health").status_code == 200


def test_a_moved_sqlite_file_is_never_recreated_and_writes_recover_without_restart(
    start, sqlite_url, example_intake
):
    path = sqlite_url.removeprefix("sqlite:///")
    with start() as srv:
        users = make_users(srv.runtime.db)
        with srv.client() as c:
            assert (
                c.post(
                    "/v1/plans", content=json.dumps(example_intake), headers=users.clinician.headers
                ).status_code
                == 201
            )
            os.rename(path, path + ".moved")
            for suffix in ("-wal", "-shm"):
                if os.path.exists(path + suffix):
                    os.rename(path + suffix, path + ".moved" + suffix)
            assert c.get("/health").status_code == 503
            failed = c.post("/v1/plans", content=json.dumps(example_intake), headers=users.clinician.headers)
            assert failed.status_code >= 500
            assert not os.path.exists(path), "the service created an empty database in place of the moved one"
            os.rename(path + ".moved", path)
            for suffix in ("-wal", "-shm"):
                if os.path.exists(path + ".moved" + suffix):
                    os.rename(path + ".moved" + suffix, path + suffix)
            assert c.get("/health").status_code == 200
            codes = [
                c.post(
                    "/v1/plans", content=json.dumps(example_intake), headers=users.clinician.headers
                ).status_code
                for _ in range(20)
            ]
    assert codes == [201] * 20, codes
    assert oct(os.stat(path).st_mode)[-3:] == "600"


def test_a_nearly_full_disk_is_not_ready(start):
    with start(min_free_disk_mb=10**9) as srv:  # more free space than any disk has: "full"
        r = httpx.get(srv.url + "/health")
    assert r.status_code == 503 and r.json()["checks"]["disk"] == "low"


def test_a_full_disk_fails_writes_closed_and_the_service_recovers(start, example_intake, tmp_path):
    """Writes that cannot be stored are refused (5xx), none is acknowledged, nothing partial."""
    with start() as srv:
        users = make_users(srv.runtime.db)
        db = srv.runtime.db
        with srv.client() as c:
            with db.engine.begin() as conn:  # the file may not grow past its current pages
                pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
            original = srv.runtime.db.engine.pool
            import sqlalchemy as sa

            @sa.event.listens_for(db.engine, "connect")
            def cap(dbapi_conn, record):
                dbapi_conn.execute(f"PRAGMA max_page_count = {pages + 1}")

            db.engine.dispose()
            big = {**example_intake, "patient": {**example_intake["patient"], "name": "x" * 190}}
            results = [
                c.post("/v1/plans", content=json.dumps(big), headers=users.clinician.headers).status_code
                for _ in range(30)
            ]
            assert any(code >= 500 for code in results), results
            sa.event.remove(db.engine, "connect", cap)
            db.engine.dispose()
            assert original is not None
            ok = c.post("/v1/plans", content=json.dumps(example_intake), headers=users.clinician.headers)
            assert ok.status_code == 201
            listed = c.get("/v1/plans?limit=100", headers=users.clinician.headers).json()["items"]
    assert len(listed) == results.count(201) + 1  # every 201 is stored, nothing else
    from carepath.api.audit import verify_chain

    assert verify_chain(srv.runtime.db).ok


def test_a_database_that_is_down_is_503_and_never_a_hang(start, tmp_path):
    """PostgreSQL stopped: here a port where nothing listens; startup refuses with one line."""
    from tests.service.helpers import free_port

    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nowhere"
    from carepath.api.app import create_app
    from carepath.api.settings import Settings

    settings = Settings(data_dir=tmp_path / "d", database_url=url, secret_key="k" * 64)
    app = create_app(settings)
    import asyncio

    async def boot() -> None:
        async with app.router.lifespan_context(app):
            pass

    with pytest.raises(Exception) as caught:
        asyncio.run(boot())
    assert "postgres" not in str(caught.value).lower() or "password" not in str(caught.value).lower()


def test_the_database_going_away_while_serving_is_503_then_recovers(
    db_url, settings_for, engine, example_intake
):
    """Readiness fails while the database is unreachable and recovers without a restart."""
    from carepath.api.app import create_app

    with ThreadServer(create_app(settings_for(db_url), engine=engine)) as srv:
        users = make_users(srv.runtime.db)
        db = srv.runtime.db
        real_url = db.engine.url
        import sqlalchemy as sa

        broken = sa.create_engine(
            "postgresql+psycopg://postgres@127.0.0.1:1/x"
            if db.dialect == "postgresql"
            else "sqlite:///file:/nonexistent/dir/x.db?mode=rw&uri=true"
        )
        good = db.engine
        db.engine = broken
        try:
            r = httpx.get(srv.url + "/health", timeout=30)
            assert r.status_code == 503 and r.json()["checks"]["database"] != "ok"
            w = httpx.post(
                srv.url + "/v1/plans",
                content=json.dumps(example_intake),
                headers=users.clinician.headers,
                timeout=30,
            )
            assert w.status_code >= 500 and "Traceback" not in w.text
        finally:
            db.engine = good
            broken.dispose()
        assert str(db.engine.url) == str(real_url)
        assert httpx.get(srv.url + "/health").status_code == 200
        ok = httpx.post(
            srv.url + "/v1/plans",
            content=json.dumps(example_intake),
            headers=users.clinician.headers,
            timeout=60,
        )
        assert ok.status_code == 201


def test_a_broken_rule_pack_refuses_startup_in_one_line(tmp_path):
    """Service side of a broken pack (issue 11 owns lint): `carepath serve` exits 1 with the
    pack's message and no traceback; nothing is served."""
    rules = tmp_path / "rules"
    (rules / "pack").mkdir(parents=True)
    for name in ("pack.yaml", "citations.yaml", "codes.yaml"):
        (rules / name).write_text((ROOT / "rules" / name).read_text())
    (rules / "pack" / "00-broken.yaml").write_text("rules:\n  - id: OUD-TST-001\n    title: [unclosed\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAREPATH_") and k != "DATABASE_URL"}
    env |= {"CAREPATH_DATA_DIR": str(tmp_path / "data"), "CAREPATH_RULES_DIR": str(rules)}
    up = subprocess.run(
        [sys.executable, "-m", "api", "db", "upgrade"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert up.returncode == 0, up.stderr
    run = subprocess.run(
        [sys.executable, "-m", "api", "serve", "--port", "9"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
