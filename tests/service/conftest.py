"""Fixtures for the service tests: databases (SQLite and PostgreSQL), users, and real servers
on loopback (uvicorn in a thread for tests that inject fakes; `carepath serve` in a
subprocess for tests that read the server's own logs or kill it).

PostgreSQL comes from CAREPATH_TEST_PG_URL (.ci/services.d/postgres.sh starts one). Without
it the PostgreSQL cases skip on a developer machine and FAIL under CI.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import pytest

from tests.service.helpers import ROOT, TEST_OVERLOAD, Users, make_users, pg_database

EXAMPLE = ROOT / "examples" / "intake-fentanyl.json"
RATES = {"rate_per_ip": 5000.0, "rate_anonymous_per_ip": 5000.0, "rate_per_account": 5000.0}


@pytest.fixture(scope="session")
def example_intake() -> dict:
    return json.loads(EXAMPLE.read_text())


def _pg_url_or_skip() -> str:
    url = os.environ.get("CAREPATH_TEST_PG_URL")
    if url:
        return url
    if os.environ.get("CI"):
        pytest.fail("CAREPATH_TEST_PG_URL is not set under CI: .ci/services.d/postgres.sh did not run")
    pytest.skip("PostgreSQL not configured (source .ci/services.d/postgres.sh to run these)")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path: Path):
    """A fresh, empty database URL on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'carepath.sqlite3'}"
        return
    with pg_database(_pg_url_or_skip()) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'carepath.sqlite3'}"


@pytest.fixture
def database(db_url):
    from carepath.api.db import Database

    db = Database(db_url)
    db.upgrade()
    yield db
    db.dispose()


@pytest.fixture
def settings_for(tmp_path: Path):
    """Settings for a server: its own data dir and secret; database_url as given."""
    from carepath.api.settings import Settings

    def make(database_url: str | None = None, **extra) -> Settings:
        extra = {**TEST_OVERLOAD, **extra}
        return Settings(
            data_dir=tmp_path / "data",
            database_url=database_url,
            secret_key=secrets.token_hex(32),
            **{"cookie_secure": False, **RATES, **extra},  # httpx sends no Secure cookie over http://
        )

    return make


@pytest.fixture
def users(database) -> Users:
    return make_users(database)


def _serve(settings, engine, **app_kwargs):
    from carepath.api.app import create_app
    from tests.service.helpers import ThreadServer

    return ThreadServer(create_app(settings, engine=engine, **app_kwargs))


@pytest.fixture
def server(db_url, settings_for, engine):
    """A real server on loopback (uvicorn thread), on each backend, with users and tokens."""
    with _serve(settings_for(db_url), engine) as srv:
        srv.users = make_users(srv.runtime.db)
        yield srv


@pytest.fixture
def sqlite_server(sqlite_url, settings_for, engine):
    with _serve(settings_for(sqlite_url), engine) as srv:
        srv.users = make_users(srv.runtime.db)
        yield srv


@pytest.fixture
def serve_app(settings_for, engine, sqlite_url):
    """Start a server with fakes injected: `with serve_app(audit_sink=Broken()) as srv:`."""

    def start(**app_kwargs):
        return _serve(settings_for(sqlite_url), app_kwargs.pop("engine", engine), **app_kwargs)

    return start


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory, engine):
    """One SQLite server for a whole module (tests that each make their own plans)."""
    from carepath.api.settings import Settings

    tmp = tmp_path_factory.mktemp("shared")
    settings = Settings(
        data_dir=tmp / "data",
        database_url=f"sqlite:///{tmp / 'carepath.sqlite3'}",
        secret_key=secrets.token_hex(32),
        **TEST_OVERLOAD,
        cookie_secure=False,
        **RATES,
    )
    with _serve(settings, engine) as srv:
        srv.users = make_users(srv.runtime.db)
        yield srv
