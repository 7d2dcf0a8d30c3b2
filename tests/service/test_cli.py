"""`carepath serve | users | audit | db` as a person would run them (subprocesses)."""

from __future__ import annotations

import httpx

from tests.service.helpers import PASSWORD, ProcessServer, run_cli, sqlite_db_in


def test_only_db_upgrade_creates_the_database_and_then_serve_says_how_to_add_an_admin(tmp_path):
    data = tmp_path / "fresh" / "data"
    refused = run_cli("serve", "--port", "9", data_dir=data)
    assert refused.returncode == 1 and "carepath db upgrade" in refused.stderr
    assert "Traceback" not in refused.stderr and not (data / "carepath.sqlite3").exists()
    assert run_cli("users", "list", data_dir=data).returncode == 1  # nor any other command
    assert not (data / "carepath.sqlite3").exists()
    created = run_cli("db", "upgrade", data_dir=data)
    assert created.returncode == 0 and "database at revision" in created.stdout
    with ProcessServer(data) as srv:
        assert httpx.get(srv.url + "/health").json()["status"] == "ok"
    err = srv.stderr.read_text()
    assert (data / "carepath.sqlite3").is_file() and (data / "secret.key").is_file()
    for name in ("carepath.sqlite3", "secret.key", "audit.key", "data.key"):
        assert oct((data / name).stat().st_mode)[-3:] == "600", name
    assert oct(data.stat().st_mode)[-3:] == "700"
    assert "no admin user yet" in err and "carepath users add --org" in err

    added = run_cli(
        "users",
        "add",
        "--org",
        "clinic-a",
        "--email",
        "Root@A.example",
        "--role",
        "admin",
        data_dir=data,
        stdin=PASSWORD + "\n",
    )
    assert added.returncode == 0, added.stderr
    assert "root@a.example" in added.stdout and PASSWORD not in added.stdout + added.stderr

    with ProcessServer(data) as srv2:
        pass
    assert "no admin user yet" not in srv2.stderr.read_text()


def test_users_token_is_printed_once_and_works(tmp_path):
    data = tmp_path / "data"
    assert run_cli("db", "upgrade", data_dir=data).returncode == 0
    env = {"CAREPATH_PASSWORD": PASSWORD}
    assert (
        run_cli(
            "users", "add", "--org", "clinic-a", "--email", "c@a.example", data_dir=data, env=env
        ).returncode
        == 0
    )
    dup = run_cli("users", "add", "--org", "clinic-a", "--email", "c@a.example", data_dir=data, env=env)
    assert dup.returncode == 2 and "already exists" in dup.stderr
    short = run_cli(
        "users", "add", "--org", "clinic-a", "--email", "d@a.example", data_dir=data, stdin="short\n"
    )
    assert short.returncode == 2 and "at least" in short.stderr
    minted = run_cli("users", "token", "c@a.example", data_dir=data)
    assert minted.returncode == 0
    token = minted.stdout.strip()
    assert token.startswith("cpt_") and "shown once" in minted.stderr
    db = sqlite_db_in(data)
    with db.engine.connect() as conn:  # only the hash is stored
        stored = conn.exec_driver_sql("SELECT token_sha256 FROM api_tokens").scalar()
    assert stored != token and token not in stored
    db.dispose()
    with ProcessServer(data) as srv:
        assert (
            httpx.get(srv.url + "/v1/plans", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        )
    listed = run_cli("users", "list", data_dir=data)
    assert "c@a.example\tclinician\tclinic-a\tactive" in listed.stdout


def test_audit_verify_reports_the_first_broken_link(tmp_path):
    from carepath.api.audit import AuditEvent, ChainedAuditSink

    data = tmp_path / "data"
    db = sqlite_db_in(data)
    sink = ChainedAuditSink()
    for i in range(4):
        with db.transaction() as tx:
            sink.append(tx, AuditEvent("plan.read", "ok", f"req-{i:04d}"))
    ok = run_cli("audit", "verify", data_dir=data)
    assert ok.returncode == 0 and "ok: 4 entries" in ok.stdout
    with db.transaction() as tx:
        tx.conn.exec_driver_sql("DROP TRIGGER audit_log_no_update")
        tx.conn.exec_driver_sql("UPDATE audit_log SET actor_id = 99 WHERE seq = 2")
    db.dispose()
    broken = run_cli("audit", "verify", data_dir=data)
    assert broken.returncode == 1 and "BROKEN at entry 2" in broken.stdout


def test_db_upgrade(tmp_path):

    r = run_cli("db", "upgrade", data_dir=tmp_path / "data")
    from tests.service.test_storage import head_revision

    assert r.returncode == 0 and f"revision {head_revision()}" in r.stdout
