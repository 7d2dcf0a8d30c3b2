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


def _database(create: bool = False) -> Any:
    """The database with its keys (api.hardening). Only ``db upgrade`` may create a SQLite file;
    every other command stops with one line saying so."""
    from carepath.api.hardening import DatabaseMissing, migrate, open_database
    from carepath.api.settings import Settings

    settings = Settings()
    try:
        db = open_database(settings, create=create)
    except DatabaseMissing as exc:
        _err(f"carepath: {exc}")
        raise typer.Exit(1) from None
    migrate(settings, db)
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
    _require_rule_pack(settings)  # one line and exit 1 on a pack that does not load or lint clean
    try:
        db = _database()
    except typer.Exit:
        raise
    except Exception as exc:  # never a traceback that could quote a connection string
        _err(f"carepath: cannot open the database ({type(exc).__name__})")
        raise typer.Exit(1) from None
    if admin_count(db) == 0:
        _err(
            "carepath: no admin user yet. Create one with\n"
            "  carepath users add --org YOUR-ORG --email you@example.org --role admin\n"
            "and clinicians with --role clinician; API tokens with `carepath users token EMAIL`."
        )
    db.dispose()
    if settings.database_url and settings.secret_key is None:
        _err(
            f"carepath: the secret key is generated into {settings.data_dir}; replicas on one "
            "database must share one: set CAREPATH_SECRET_KEY (docs/deployment.md)"
        )
    from carepath.api.http_protocol import uvicorn_options

    options = uvicorn_options(settings)  # header/body limits, TLS, trusted proxies (docs/security.md)
    scheme = "https" if "ssl_certfile" in options else "http"
    _err(f"carepath: serving on {scheme}://{host}:{port} (Ctrl-C to stop)")
    uvicorn.run(
        "carepath.api.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers if workers > 1 else None,
        log_config=None,
        access_log=False,
        **options,
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
    days: Annotated[
        int | None, typer.Option(help="Lifetime in days (default and most: CAREPATH_TOKEN_MAX_AGE_DAYS).")
    ] = None,
) -> None:
    """Mint an API token (printed once on stdout; only its hash is stored). It expires."""
    from datetime import timedelta

    from carepath.api.auth import AccountError, mint_token
    from carepath.api.settings import Settings

    most = Settings().token_max_age_days
    lifetime = min(days or most, most)
    db = _database()
    try:
        now = _now()
        token = mint_token(db, email, now=now, label=label, expires_at=now + timedelta(days=lifetime))
    except AccountError as exc:
        _err(f"carepath: {exc}")
        raise typer.Exit(2) from None
    finally:
        db.dispose()
    _err("carepath: API token (shown once; use as 'Authorization: Bearer <token>'):")
    typer.echo(token)


@users_app.command("mfa")
def users_mfa(
    email: Annotated[str, typer.Argument(help="The user's email.")],
    disable: Annotated[bool, typer.Option("--disable", help="Turn the second factor off.")] = False,
) -> None:
    """Enrol a user in TOTP (prints the otpauth:// URI once, for their authenticator app)."""
    import pyotp

    from carepath.api.auth import AccountError, normalise_email

    db = _database()
    try:
        address = normalise_email(email)
        with db.transaction() as tx:
            found = tx.user_with_hash(address)
            if found is None:
                raise AccountError("no user with this email")
            secret = None if disable else pyotp.random_base32()
            tx.set_totp(found[0].id, secret, not disable)
    except AccountError as exc:
        _err(f"carepath: {exc}")
        raise typer.Exit(2) from None
    finally:
        db.dispose()
    if disable:
        typer.echo(f"second factor off for {address}")
        return
    _err("carepath: add this to the user's authenticator app (shown once):")
    typer.echo(pyotp.TOTP(secret).provisioning_uri(name=address, issuer_name="carepath"))


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
    """Recompute the keyed chain, every stored plan's and override's hash, and every signed
    checkpoint; exit 1 and name the first problem if anything was tampered with."""
    from carepath.api.audit import verify_chain

    db = _database()
    try:
        result = verify_chain(db)
    finally:
        db.dispose()
    if result.ok:
        typer.echo(
            f"audit chain ok: {result.entries} entries ({result.legacy_rows} before the keyed chain), "
            f"{result.plans} plans and {result.overrides} overrides match their rows, "
            f"{result.checkpoints} signed checkpoints match"
        )
        return
    where = f" at entry {result.broken_seq}" if result.broken_seq else ""
    typer.echo(f"audit chain BROKEN{where}: {result.reason}")
    raise typer.Exit(1)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create the database (SQLite: the only command that does) and apply pending migrations."""
    db = _database(create=True)
    try:
        typer.echo(f"database at revision {db.current_revision()}")
    finally:
        db.dispose()


@db_app.command("grant")
def db_grant(role: Annotated[str, typer.Argument(help="The application's PostgreSQL role.")]) -> None:
    """PostgreSQL: give the service's role what it needs and nothing more (run as the schema
    owner, i.e. with DATABASE_URL or CAREPATH_MIGRATION_DATABASE_URL of the owner)."""
    from carepath.api.pg_roles import grant_app_role

    db = _database()
    try:
        grant_app_role(db, role)
    except ValueError as exc:
        _err(f"carepath: {exc}")
        raise typer.Exit(2) from None
    finally:
        db.dispose()
    typer.echo(f"granted role {role}: read and append, no DDL, no TRUNCATE, no trigger changes")


keys_app = typer.Typer(no_args_is_help=True, help="Encryption keys at rest (docs/security.md).")


@keys_app.command("new")
def keys_new(key_id: Annotated[str, typer.Argument(help="Id of the new key, e.g. k2.")]) -> None:
    """Print a new data key line 'id:base64' (put it FIRST in CAREPATH_DATA_KEYS)."""
    from carepath.api.keys import new_data_key_line

    if not key_id.isalnum() or len(key_id) > 32:
        _err("carepath: a key id is letters and digits, at most 32")
        raise typer.Exit(2)
    typer.echo(new_data_key_line(key_id))


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Re-wrap every plan's data key under the first key of CAREPATH_DATA_KEYS."""
    from carepath.api.vault import rotate

    db = _database()
    try:
        vault = db.tx_factory.vault
        done = rotate(db, vault)
        with db.transaction(readonly=True) as tx:
            counts = tx.count_content_keys()
    finally:
        db.dispose()
    typer.echo(f"re-wrapped {done} data keys; now by key: {counts} (older keys may be removed once unused)")


def register_service_commands(app: typer.Typer) -> None:
    app.command()(serve)
    app.add_typer(users_app, name="users")
    app.add_typer(audit_app, name="audit")
    app.add_typer(db_app, name="db")
    app.add_typer(keys_app, name="keys")
