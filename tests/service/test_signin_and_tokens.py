"""Sign-in lockout with back-off (audited with account and address), the TOTP second factor,
API tokens that expire and can be listed and revoked one by one over HTTP, Secure cookies."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import pyotp
import pytest

from carepath.api.settings import Settings
from tests.service.helpers import PASSWORD, ThreadServer, make_users


@pytest.fixture
def srv(settings_for, sqlite_url, engine):
    from carepath.api.app import create_app

    settings = settings_for(sqlite_url, login_lockout_after=3, login_lockout_base_s=60)
    with ThreadServer(create_app(settings, engine=engine)) as server:
        server.users = make_users(server.runtime.db)
        yield server


def _csrf(c: httpx.Client) -> str:
    page = c.get("/login")
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def _login(c: httpx.Client, email: str, password: str, otp: str = "") -> httpx.Response:
    return c.post("/login", data={"email": email, "password": password, "csrf_token": _csrf(c), "otp": otp})


def _audit(srv, action: str):
    with srv.runtime.db.transaction(readonly=True) as tx:
        return [e for e in tx.audit_entries() if e.action == action]


def test_wrong_passwords_lock_the_account_with_back_off_audited_with_account_and_address(srv):
    email = srv.users.clinician.email
    with srv.client() as c:
        codes = [_login(c, email, "wrong password 123").status_code for _ in range(3)]
        assert codes == [401, 401, 401]
        locked = _login(c, email, PASSWORD)  # the right password, but locked: not even checked
        assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0
        assert "Try again in about" in locked.text
    denied = [e for e in _audit(srv, "auth.login") if e.outcome == "denied"]
    assert len(denied) == 3
    assert all(e.actor_id == srv.users.clinician.user_id and e.address == "127.0.0.1" for e in denied)
    assert all(e.detail and e.detail.startswith("account=") for e in denied)
    lockouts = _audit(srv, "auth.lockout")
    assert len(lockouts) == 1 and "locked_for_s=60" in lockouts[0].detail
    assert any(e.outcome == "locked" for e in _audit(srv, "auth.login"))
    # back-off: the next lockout is twice as long
    lockout = srv.runtime.hardening.lockout
    key = lockout_key(srv, email)
    later = datetime.now(UTC) + timedelta(minutes=2)
    for _ in range(3):
        state = lockout.failed(key, later)
    assert state.locked_for_s == 120


def lockout_key(srv, email: str) -> str:
    from carepath.api.throttle import account_key

    return account_key(srv.runtime.secret, email)


def test_unknown_emails_are_throttled_the_same_and_their_text_is_not_stored(srv):
    with srv.client() as c:
        codes = [_login(c, "nobody@nowhere.example", "guess guess guess").status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    rows = _audit(srv, "auth.login")
    assert all("nobody" not in (e.detail or "") for e in rows)


def test_a_successful_sign_in_clears_the_failures(srv):
    email = srv.users.reviewer.email
    with srv.client() as c:
        assert _login(c, email, "wrong password 123").status_code == 401
        assert _login(c, email, "wrong password 123").status_code == 401
        assert _login(c, email, PASSWORD).status_code == 303
        assert _login(c, email, "wrong password 123").status_code == 401
        assert _login(c, email, "wrong password 123").status_code == 401
        assert _login(c, email, PASSWORD).status_code == 303


def test_totp_is_required_once_enrolled_and_a_code_is_used_once(srv):
    email, uid = srv.users.clinician.email, srv.users.clinician.user_id
    secret = pyotp.random_base32()
    with srv.runtime.db.transaction() as tx:
        tx.set_totp(uid, secret, True)
    with srv.runtime.db.engine.connect() as conn:  # the secret is sealed at rest
        stored = conn.exec_driver_sql(f"SELECT totp_secret FROM users WHERE id = {uid}").scalar()
    assert stored.startswith("cp1:") and secret not in stored
    code = pyotp.TOTP(secret).now()
    with srv.client() as c:
        assert _login(c, email, PASSWORD).status_code == 401  # password alone is not enough
        assert _login(c, email, PASSWORD, "000000" if code != "000000" else "111111").status_code == 401
        ok = _login(c, email, PASSWORD, code)
        assert ok.status_code == 303
    with srv.client() as c2:
        assert _login(c2, email, PASSWORD, code).status_code in (401, 429)  # replay refused


def test_tokens_expire_list_and_revoke_one_by_one(srv):
    users = srv.users
    db = srv.runtime.db
    from carepath.api.auth import mint_token

    now = datetime.now(UTC)
    expired = mint_token(
        db,
        users.clinician.email,
        now=now - timedelta(days=2),
        label="old",
        expires_at=now - timedelta(days=1),
    )
    with srv.client() as c:
        assert c.get("/session", headers={"Authorization": f"Bearer {expired}"}).status_code == 401
        listed = c.get("/v1/tokens", headers=users.clinician.headers).json()["items"]
        assert {t["label"] for t in listed} >= {"api", "old"}
        assert all("cpt_" not in str(t) for t in listed)
        old = next(t for t in listed if t["label"] == "old")
        assert old["active"] is False
        # a bearer token may not mint another
        assert c.post("/v1/tokens", json={"label": "x"}, headers=users.clinician.headers).status_code == 403
        # another organisation's token cannot be revoked (404), nor another user's (non-admin)
        mine = next(t for t in listed if t["label"] == "api")
        assert (
            c.delete(f"/v1/tokens/{mine['token_id']}", headers=users.other_clinician.headers).status_code
            == 404
        )
        assert c.delete(f"/v1/tokens/{mine['token_id']}", headers=users.reviewer.headers).status_code == 404
        # revoking one token leaves the others working
        second = mint_token(db, users.clinician.email, now=now, label="second")
        assert c.delete(f"/v1/tokens/{mine['token_id']}", headers=users.clinician.headers).status_code == 204
        assert c.get("/session", headers=users.clinician.headers).status_code == 401
        assert c.get("/session", headers={"Authorization": f"Bearer {second}"}).status_code == 200
        # an admin sees the organisation's tokens
        everyone = c.get("/v1/tokens", headers=users.admin.headers).json()["items"]
        assert {t["owner"] for t in everyone} >= {users.clinician.email, users.reviewer.email}
        assert users.other_clinician.email not in {t["owner"] for t in everyone}
    assert {e.action for e in _audit(srv, "token.revoke")} == {"token.revoke"}


def test_a_session_mints_a_token_shown_once_with_a_bounded_lifetime(srv):
    with srv.client() as c:
        assert _login(c, srv.users.clinician.email, PASSWORD).status_code == 303
        csrf = c.get("/session").json()["csrf_token"]
        r = c.post("/v1/tokens", json={"label": "ehr gateway", "days": 99999}, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 422  # past the limit of the setting: refused, not silently cut
        r = c.post("/v1/tokens", json={"label": "ehr gateway", "days": 30}, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 201
        token = r.json()["token"]
        expires = datetime.fromisoformat(r.json()["expires_at"])
    assert timedelta(days=29) < expires - datetime.now(UTC) <= timedelta(days=30)
    assert httpx.get(srv.url + "/session", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_cookies_are_secure_by_default():
    assert Settings().cookie_secure is True


def test_the_session_cookie_carries_the_secure_flag_by_default(settings_for, sqlite_url, engine):
    from carepath.api.app import create_app

    settings = settings_for(sqlite_url, cookie_secure=True)
    with ThreadServer(create_app(settings, engine=engine)) as server:
        users = make_users(server.runtime.db)
        with server.client() as c:
            page = c.get("/login")
            assert "secure" in page.headers["set-cookie"].lower()
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
            pre = page.cookies.get("carepath_login_csrf")
            r = c.post(
                "/login",
                data={"email": users.clinician.email, "password": PASSWORD, "csrf_token": token},
                cookies={"carepath_login_csrf": pre},
            )
    assert r.status_code == 303 and "secure" in r.headers["set-cookie"].lower()
