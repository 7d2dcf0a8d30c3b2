"""Browser sign-in: the login form's CSRF token, session cookie, CSRF on unsafe requests, logout."""

from __future__ import annotations

import json
import re

from tests.service.helpers import PASSWORD


def _login_form(c) -> str:
    page = c.get("/login")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def test_login_session_csrf_and_logout(shared_server, example_intake):
    alice = shared_server.users.clinician
    with shared_server.client() as c:
        token = _login_form(c)
        wrong = c.post(
            "/login", data={"email": alice.email, "password": "wrong password!", "csrf_token": token}
        )
        assert wrong.status_code == 401 and "carepath_session" not in wrong.cookies
        assert "incorrect" in wrong.text and "wrong password" not in wrong.text

        ok = c.post(
            "/login",
            data={
                "email": alice.email.upper(),
                "password": PASSWORD,
                "csrf_token": token,
                "next": "//evil.example/x",
            },
        )
        assert ok.status_code == 303 and ok.headers["location"] == "/"  # no open redirect
        cookie = ok.headers["set-cookie"]
        assert (
            "carepath_session=" in cookie
            and "HttpOnly" in cookie
            and "SameSite=lax" in cookie.replace("Lax", "lax")
        )

        assert c.get("/v1/plans").status_code == 200  # the cookie authenticates reads
        no_csrf = c.post("/v1/plans", content=json.dumps(example_intake))
        assert no_csrf.status_code == 403 and no_csrf.json()["error"] == "csrf_failed"
        forged = c.post("/v1/plans", content=json.dumps(example_intake), headers={"X-CSRF-Token": token})
        assert forged.status_code == 403  # the pre-login token is not the session's

        me = c.get("/session").json()
        assert me["email"] == alice.email and me["via"] == "session"
        session_token = me["csrf_token"]
        created = c.post(
            "/v1/plans", content=json.dumps(example_intake), headers={"X-CSRF-Token": session_token}
        )
        assert created.status_code == 201

        assert c.post("/logout").status_code == 403  # logout needs the token too
        out = c.post("/logout", data={"csrf_token": session_token})
        assert out.status_code == 303 and out.headers["location"] == "/login"
        c.cookies.clear()
        assert c.get("/v1/plans").status_code == 401


def test_a_stolen_cookie_stops_working_after_logout(shared_server):
    alice = shared_server.users.clinician
    with shared_server.client() as c:
        token = _login_form(c)
        c.post("/login", data={"email": alice.email, "password": PASSWORD, "csrf_token": token})
        stolen = c.cookies.get("carepath_session")
        assert (
            c.post("/logout", data={"csrf_token": c.get("/session").json()["csrf_token"]}).status_code == 303
        )
    with shared_server.client(cookies={"carepath_session": stolen}) as thief:
        assert thief.get("/v1/plans").status_code == 401


def test_login_without_the_form_token_is_refused(shared_server):
    alice = shared_server.users.clinician
    with shared_server.client() as c:
        r = c.post("/login", data={"email": alice.email, "password": PASSWORD})
        assert r.status_code == 403 and "carepath_session" not in r.cookies
        _login_form(c)
        r = c.post("/login", data={"email": alice.email, "password": PASSWORD, "csrf_token": "forged"})
        assert r.status_code == 403


def test_browsers_get_a_sign_in_hint_not_json(shared_server):
    with shared_server.client() as c:
        r = c.get("/v1/plans", headers={"Accept": "text/html"})
    assert r.status_code == 401 and 'href="/login"' in r.text.replace("'", '"')


def test_disabled_users_lose_access(shared_server, example_intake):
    from datetime import UTC, datetime

    from carepath.api.auth import disable_user
    from tests.service.helpers import add_account

    temp = add_account(shared_server.runtime.db, "clinic-a", "temp@a.example", "clinician")
    with shared_server.client() as c:
        assert c.get("/v1/plans", headers=temp.headers).status_code == 200
        disable_user(shared_server.runtime.db, temp.email, datetime.now(UTC))
        assert c.get("/v1/plans", headers=temp.headers).status_code == 401
