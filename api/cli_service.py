"""Service commands for the ``carepath`` CLI: serve, users, audit, db.

Heavy imports (uvicorn, SQLAlchemy) happen inside the commands, so ``carepath evaluate``
stays fast. Nothing sensitive is printed: passwords are never echoed, a minted API token is
printed once (stdout) and never stored in clear.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

__all__ = ["register_service_commands"]

users_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None, help="User accounts: add, token, list, disable."
)
audit_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None, help="The hash-chained audit log."
)
db_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None, help="Database schema (Alembic migrations)."
)

PASSWORD_ENV = "CAREPATH_PASSWORD"


def _err(message: str) -> None:
    typer.echo(message, err=True)


def _database() -> Any:
    from carepath.api.db import Database
    from carepath.api.settings import Settings

    settings = Settings()
    db = Database(settings.resolved_database_url(), sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms)
    db.upgrade()
    return db


def _now() -> datetime:
    return datetime.now(UTC)


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes (each holds its own engine).")] = 1,
) -> None:
    """Run the API and the clinician web form (SQLite in ./data unless DATABASE_URL is set)."""
    import uvicorn

    from carepath.api.auth import admin_count
    from carepath.api.logs import configure_logging
    from carepath.api.settings import Settings

    settings = Settings()
    configure_logging(settings.log_level)
    _require_rule_pack(settings)
    first_run = not settings.database_url and not settings.sqlite_path().exists()
    try:
        db = _database()
    except Exception as exc:  # never a traceback that could quote a connection string
        _err(f"carepath: cannot open the database ({type(exc).__name__})")
        raise typer.Exit(1) from None
    if first_run:
        _err(f"carepath: created {settings.sqlite_path()} (SQLite, WAL) on first run")
    if admin_count(db) == 0:
        _err(
            "carepath: no admin user yet. Create one with\n"
            "  carepath users add --org YOUR-ORG --email you@example.org --role admin\n"
            "and clinicians with --role clinician; API tokens with `carepath users token EMAIL`."
        )
    db.dispose()
    _err(f"carepath: serving on http://{host}:{port} (Ctrl-C to stop)")
    uvicorn.run(
        "carepath.api.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers if workers > 1 else None,
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,
    )


def _require_rule_pack(settings: Any) -> None:
    """Refuse to serve a rule pack that does not load and lint clean: one line, exit 1."""
    from carepath.api.runtime import checked_rulepack
    from carepath.engine import RulePackError

    try:
        checked_rulepack(settings)
    except RulePackError as exc:
        _err(f"carepath: rule pack refused: {exc}")
        raise typer.Exit(1) from None


def _read_password(from_stdin: bool) -> str:
    """--password-stdin, else $CAREPATH_PASSWORD, else piped stdin, else a hidden prompt."""
    if not from_stdin and os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    if from_stdin or not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


@users_app.command("add")
def users_add(
    org: Annotated[str, typer.Option(help="Organisation slug (created if new), e.g. clinic-north.")],
    email: Annotated[str, typer.Option(help="Sign-in email.")],
    role: Annotated[str, typer.Option(help="clinician | reviewer | admin")] = "clinician",
    org_name: Annotated[str | None, typer.Option(help="Display name for a new organisation.")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin.")
    ] = False,
) -> None:
    """Create a user. Password: --password-stdin, $CAREPATH_PASSWORD, piped stdin, or a prompt."""
    from carepath.api.auth import AccountError, create_user

    password = _read_password(password_stdin)
    db = _database()
    try:
        user = create_user(
            db, org=org, email=email, password=password, role=role, now=_now(), org_name=org_name
        )
    except AccountError as exc:
        _err(f"carepath: {exc}")
        raise typer.Exit(2) from None
    finally:
        db.dispose()
    typer.echo(f"created {user.role} {user.email} (user {user.id}) in organisation '{user.org_slug}'")


@users_app.command("token")
def users_token(
    email: Annotated[str, typer.Argument(help="The user's email.")],
    label: Annotated[str, typer.Option(help="What the token is for (shown in listings).")] = "api",
) -> None:
    """Mint an API token (printed once on stdout; only its hash is stored)."""
    from carepath.api.auth import AccountError, mint_token

    db = _database()
    try:
        token = mint_token(db, email, now=_now(), label=label)
    except AccountError as exc:
        _err(f"carepath: {exc}")
        raise typer.Exit(2) from None
    finally:
        db.dispose()
    _err("carepath: API token (shown once; use as 'Authorization: Bearer <token>'):")
    typer.echo(token)


@users_app.command("list")
def users_list() -> None:
    """List users: id, email, role, organisation, active."""
    from carepath.api.auth import list_users

    db = _database()
    try:
        for u in list_users(db):
            typer.echo(f"{u.id}\t{u.email}\t{u.role}\t{u.org_slug}\t{'active' if u.active else 'disabled'}")
    finally:
        db.dispose()


@users_app.command("disable")
def users_disable(email: Annotated[str, typer.Argument(help="The user's email.")]) -> None:
    """Disable a user and revoke their API tokens."""
    from carepath.api.auth import AccountError, disable_user

    db = _database()
    try:
        user = disable_user(db, email, _now())
    except AccountError as exc:
        _err(f"carepath: {exc}")
        raise typer.Exit(2) from None
    finally:
        db.dispose()
    typer.echo(f"disabled {user.email}; API tokens revoked")


@audit_app.command("verify")
def audit_verify() -> None:
    """Recompute the hash chain; exit 1 and name the first broken row if it was tampered with."""
    from carepath.api.audit import verify_chain

    db = _database()
    try:
        result = verify_chain(db)
    finally:
        db.dispose()
    if result.ok:
        typer.echo(f"audit chain ok: {result.entries} entries")
        return
    typer.echo(f"audit chain BROKEN at entry {result.broken_seq}: {result.reason}")
    raise typer.Exit(1)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending migrations (also done automatically when the server starts)."""
    db = _database()
    try:
        typer.echo(f"database at revision {db.current_revision()}")
    finally:
        db.dispose()


def register_service_commands(app: typer.Typer) -> None:
    app.command()(serve)
    app.add_typer(users_app, name="users")
    app.add_typer(audit_app, name="audit")
    app.add_typer(db_app, name="db")
