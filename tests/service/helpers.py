"""Test helpers: free ports, servers on loopback, users and tokens, PostgreSQL databases."""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery staple"
STARTUP_LIMIT_S = 60.0  # a limit on waiting, never an assertion about speed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def pg_database(admin_url: str) -> Iterator[str]:
    """A throwaway database on the test cluster; dropped afterwards."""
    import psycopg

    parts = urlsplit(admin_url)
    plain = urlunsplit(parts._replace(scheme="postgresql"))
    name = "cp_" + secrets.token_hex(6)
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(parts._replace(path="/" + name))
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Account:
    email: str
    role: str
    org: str
    token: str
    user_id: int

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Users:
    clinician: Account  # clinic-a
    reviewer: Account  # clinic-a
    admin: Account  # clinic-a
    other_clinician: Account  # clinic-b
    other_reviewer: Account  # clinic-b

    def all(self) -> list[Account]:
        return [self.clinician, self.reviewer, self.admin, self.other_clinician, self.other_reviewer]


@functools.cache
def password_hash() -> str:
    """One argon2 hash of PASSWORD per test session (hashing costs ~0.5 s a time)."""
    from carepath.api.security import hash_password

    return hash_password(PASSWORD)


def add_account(db: Any, org: str, email: str, role: str) -> Account:
    """A user with PASSWORD and an API token, created through the storage API."""
    from carepath.api.auth import mint_token

    now = datetime.now(UTC)
    with db.transaction() as tx:
        organisation = tx.org_by_slug(org) or tx.add_org(org, org, now)
        user = tx.add_user(organisation, email, password_hash(), role, now)
    return Account(email, role, org, mint_token(db, email, now=now), user.id)


def make_users(db: Any) -> Users:
    return Users(
        clinician=add_account(db, "clinic-a", "alice@a.example", "clinician"),
        reviewer=add_account(db, "clinic-a", "rita@a.example", "reviewer"),
        admin=add_account(db, "clinic-a", "adam@a.example", "admin"),
        other_clinician=add_account(db, "clinic-b", "bob@b.example", "clinician"),
        other_reviewer=add_account(db, "clinic-b", "bea@b.example", "reviewer"),
    )


class ThreadServer:
    """uvicorn serving an app object in a background thread, on a free loopback port."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_config=None, access_log=False, lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + STARTUP_LIMIT_S
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    @property
    def runtime(self) -> Any:
        return self.app.state.runtime

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kw)


class ProcessServer:
    """`carepath serve` (python -m api serve) in a subprocess; its stdout/stderr go to files."""

    def __init__(
        self, data_dir: Path, *, env: dict[str, str] | None = None, log_dir: Path | None = None
    ) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_dir = log_dir or data_dir.parent
        inherited = {
            k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CAREPATH_DATABASE_URL")
        }
        self.env = {**inherited, "CAREPATH_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.n = 0

    def start(self) -> ProcessServer:
        self.n += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.stdout = self.log_dir / f"server-{self.port}-{self.n}.out"
        self.stderr = self.log_dir / f"server-{self.port}-{self.n}.err"
        with open(self.stdout, "wb") as out, open(self.stderr, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "carepath.api", "serve", "--port", str(self.port)],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
            )
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_LIMIT_S
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.stderr.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not become ready")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def logs(self) -> str:
        out = []
        for i in range(1, self.n + 1):
            for ext in ("out", "err"):
                p = self.log_dir / f"server-{self.port}-{i}.{ext}"
                if p.exists():
                    out.append(p.read_text(errors="replace"))
        return "\n".join(out)

    def __enter__(self) -> ProcessServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def sqlite_db_in(data_dir: Path) -> Any:
    """The Database `carepath serve` uses for this data dir (migrated)."""
    from carepath.api.db import Database

    data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(f"sqlite:///{data_dir / 'carepath.sqlite3'}")
    db.upgrade()
    return db


def run_cli(
    *args: str, data_dir: Path, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    inherited = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "CAREPATH_DATABASE_URL", "CAREPATH_PASSWORD")
    }
    return subprocess.run(
        [sys.executable, "-m", "carepath.api", *args],
        cwd=ROOT,
        env={**inherited, "CAREPATH_DATA_DIR": str(data_dir), **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
