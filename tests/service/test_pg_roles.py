"""PostgreSQL: the schema belongs to a migration role; the service's role cannot drop or
disable the append-only triggers, truncate, delete, update or alter anything it must not
(`carepath db grant`), and the service runs fine as that role (real PostgreSQL)."""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from tests.service.conftest import _pg_url_or_skip
from tests.service.helpers import ThreadServer, make_users


@contextlib.contextmanager
def owner_and_app() -> Iterator[tuple[str, str, str]]:
    import psycopg

    admin = _pg_url_or_skip()
    parts = urlsplit(admin)
    plain = urlunsplit(parts._replace(scheme="postgresql"))
    tag = secrets.token_hex(4)
    owner, app, name = f"cp_owner_{tag}", f"cp_app_{tag}", f"cp_roles_{tag}"
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{owner}" LOGIN')
        conn.execute(f'CREATE ROLE "{app}" LOGIN')
        conn.execute(f'CREATE DATABASE "{name}" OWNER "{owner}"')
    host = parts.netloc.split("@")[-1]

    def url(role: str) -> str:
        return urlunsplit(parts._replace(netloc=f"{role}@{host}", path="/" + name))

    try:
        yield url(owner), url(app), app
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{app}"')
            conn.execute(f'DROP ROLE IF EXISTS "{owner}"')


FORBIDDEN = [
    "DROP TRIGGER audit_log_append_only ON audit_log",
    "ALTER TABLE audit_log DISABLE TRIGGER ALL",
    "ALTER TABLE plans DISABLE TRIGGER plans_append_only",
    "TRUNCATE audit_log",
    "TRUNCATE plans CASCADE",
    "DELETE FROM audit_log",
    "UPDATE audit_log SET outcome = 'ok'",
    "UPDATE plans SET level_of_care = 'loc.residential'",
    "DELETE FROM plans",
    "DELETE FROM content_keys",
    "UPDATE content_keys SET kek_id = 'x'",
    "DROP TABLE plans CASCADE",
    "ALTER TABLE plans ADD COLUMN sneaky integer",
    "DROP FUNCTION carepath_append_only() CASCADE",
    "CREATE OR REPLACE FUNCTION carepath_append_only() RETURNS trigger LANGUAGE plpgsql "
    "AS $$ BEGIN RETURN NEW; END $$",
]


def test_the_app_role_cannot_touch_the_guards_and_the_service_runs_as_it(
    settings_for, engine, example_intake
):
    import psycopg

    from carepath.api.db import Database
    from carepath.api.pg_roles import grant_app_role

    with owner_and_app() as (owner_url, app_url, app_role):
        owner_db = Database(owner_url)
        owner_db.upgrade()
        grant_app_role(owner_db, app_role)
        owner_db.dispose()
        plain = urlunsplit(urlsplit(app_url)._replace(scheme="postgresql"))
        settings = settings_for(app_url, migration_database_url=owner_url)
        with ThreadServer(_app(settings, engine)) as srv:
            users = make_users(srv.runtime.db)
            with srv.client() as c:
                r = c.post("/v1/plans", content=json.dumps(example_intake), headers=users.clinician.headers)
                assert r.status_code == 201, r.text
                pid = r.json()["plan_id"]
                assert c.get(f"/v1/plans/{pid}", headers=users.clinician.headers).status_code == 200
        refused = []
        for sql in FORBIDDEN:
            with psycopg.connect(plain, autocommit=True) as conn:
                try:
                    conn.execute(sql)
                except psycopg.Error as exc:
                    refused.append((sql, type(exc).__name__))
                    continue
            pytest.fail(f"the application role could run: {sql}")
        assert len(refused) == len(FORBIDDEN)
        from carepath.api.audit import verify_chain
        from carepath.api.hardening import open_database

        db = open_database(settings)
        try:
            assert verify_chain(db).ok
        finally:
            db.dispose()
    assert httpx  # (imported for the server's client)


def _app(settings, engine):
    from carepath.api.app import create_app

    return create_app(settings, engine=engine)


def test_grant_refuses_a_bad_role_name(database):
    from carepath.api.pg_roles import grant_statements

    with pytest.raises(ValueError):
        grant_statements('x"; DROP TABLE plans; --')
