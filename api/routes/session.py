"""Browser sign-in: GET/POST /login, POST /logout (cookie session, CSRF-protected).

The login form uses a signed double-submit token (a random pre-login cookie, and its HMAC
in the form); once signed in, forms carry ``csrf_token(request)`` (api.deps). The page is
plain HTML from ``api/templates/login.html`` (the web form restyles it).
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from carepath.api.auth import login as check_login
from carepath.api.auth import logout as end_session
from carepath.api.deps import RuntimeDep, allow, csrf_token
from carepath.api.errors import CsrfFailed, request_id_of
from carepath.api.records import Principal
from carepath.api.runtime import Runtime
from carepath.api.security import csrf_for_login, csrf_matches
from carepath.api.service import Caller
from carepath.api.settings import LOGIN_CSRF_COOKIE, SESSION_COOKIE
from carepath.api.signin import SignInGate

router = APIRouter(tags=["session"])

LogoutCaller = Annotated[Caller, Depends(allow("auth.logout"))]
SessionCaller = Annotated[Caller, Depends(allow("session.read"))]


class SessionInfo(BaseModel):
    user_id: int
    email: str
    role: str
    organisation: str
    via: str = Field(description="bearer | session")
    csrf_token: str | None = Field(
        description="For cookie sessions: send it as X-CSRF-Token (or a csrf_token form field) "
        "on unsafe requests."
    )


def safe_next(target: str | None) -> str:
    """Only same-site paths: '/x', never '//host' or 'https://host'."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target[:500]
    return "/"


def _login_page(request: Request, rt: Runtime, *, error: str | None, status: int, next_url: str) -> Response:
    fresh = None
    if not request.cookies.get(LOGIN_CSRF_COOKIE):
        fresh = secrets.token_urlsafe(32)
        request.state.login_csrf_cookie = fresh
    response = rt.templates.TemplateResponse(
        request,
        "login.html",
        {"error": error, "next": next_url, "csrf": csrf_token(request)},
        status_code=status,
    )
    if fresh:
        response.set_cookie(
            LOGIN_CSRF_COOKIE,
            fresh,
            httponly=True,
            samesite="strict",
            secure=rt.settings.cookie_secure,
            path="/login",
        )
    return response


@router.get("/login", name="login.page", response_class=HTMLResponse, summary="Sign-in page")
def login_page(request: Request, rt: RuntimeDep, next: str | None = None) -> Response:
    return _login_page(request, rt, error=None, status=200, next_url=safe_next(next))


@router.post(
    "/login",
    name="login",
    response_class=HTMLResponse,
    summary="Sign in (form: email, password, csrf_token, next); sets the session cookie",
    responses={303: {"description": "Signed in; redirect to next."}, 401: {}, 403: {}},
)
async def login(request: Request, rt: RuntimeDep) -> Response:
    form = await request.form()
    pre = request.cookies.get(LOGIN_CSRF_COOKIE)
    if not pre or not csrf_matches(csrf_for_login(rt.secret, pre), str(form.get("csrf_token") or "")):
        raise CsrfFailed()
    email, password = str(form.get("email") or ""), str(form.get("password") or "")
    next_url = safe_next(str(form.get("next") or "/"))
    now = rt.clock()
    rid = request_id_of(request)
    gate = SignInGate(rt, email, rid)  # lockout with back-off, TOTP, audit with account + address
    locked_for = await run_in_threadpool(gate.locked_for, now)
    if locked_for:
        page = _login_page(request, rt, error=gate.locked_message(locked_for), status=429, next_url=next_url)
        page.headers["Retry-After"] = str(locked_for)
        return page
    result = await run_in_threadpool(
        check_login, rt.db, email, password, now=now, max_age_s=rt.settings.session_max_age_s
    )
    plans = rt.plans()
    if result is not None and not await run_in_threadpool(
        gate.second_factor_ok, result, form.get("otp"), now
    ):
        result = None
    if result is None:
        await run_in_threadpool(gate.failed, now)
        return _login_page(request, rt, error=gate.failure_message(), status=401, next_url=next_url)
    await run_in_threadpool(gate.succeeded)
    user, token = result
    request.state.user_id = user.id
    await run_in_threadpool(plans.record, Caller(Principal(user, "session"), rid), "auth.login", "ok")
    response = RedirectResponse(next_url, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=rt.settings.session_max_age_s,
        httponly=True,
        samesite="lax",
        secure=rt.settings.cookie_secure,
        path="/",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post(
    "/logout",
    name="logout",
    summary="Sign out (ends the session; CSRF token required)",
    status_code=303,
    responses={303: {"description": "Signed out; redirect to /login."}, 401: {}, 403: {}},
)
def logout(caller: LogoutCaller, rt: RuntimeDep) -> Response:
    if caller.principal.session_token:
        end_session(rt.db, caller.principal.session_token, rt.clock())
    rt.plans().record(caller, "auth.logout", "ok")
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get(
    "/session",
    name="session.read",
    response_model=SessionInfo,
    summary="Who am I: user, role, organisation, and the CSRF token of a cookie session",
    responses={401: {"description": "Not signed in."}},
)
def whoami(caller: SessionCaller, request: Request) -> SessionInfo:
    user = caller.user
    return SessionInfo(
        user_id=user.id,
        email=user.email,
        role=user.role,
        organisation=user.org_slug,
        via=caller.principal.via,
        csrf_token=csrf_token(request) if caller.principal.via == "session" else None,
    )
