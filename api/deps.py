"""FastAPI dependencies and their ``Annotated`` aliases: the seams routes are built from.

RuntimeDep    the process's Runtime (db, engine, audit sink, clock, secret, templates)
PlansDep      a PlanService (the use cases: create, reevaluate, get, list, overrides)
RequestId     this request's id (also in the X-Request-ID response header and the audit)
allow(action) -> dependency returning a Caller (principal + request id) if the caller is
              authenticated (bearer token or session cookie) AND their role may do
              ``action`` (api.policy); otherwise 401 / 403, audited for patient-data actions.
              Unsafe methods authenticated by cookie must pass the CSRF check.
PlanWriter, PlanReader, ... ready-made aliases of allow(...) for the common actions.
RawBody       the request body, at most MAX_BODY_BYTES + 1 bytes read (the parser refuses more)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from carepath.api.auth import principal_for_bearer, principal_for_session
from carepath.api.errors import AuthRequired, CsrfFailed, Forbidden, request_id_of
from carepath.api.hardening import audit_anonymous, enforce_account_rate
from carepath.api.policy import AUDITED, allowed
from carepath.api.records import Principal
from carepath.api.runtime import Runtime
from carepath.api.security import csrf_for_login, csrf_for_session, csrf_matches
from carepath.api.service import Caller, PlanService
from carepath.api.settings import LOGIN_CSRF_COOKIE, SESSION_COOKIE
from carepath.engine.intake import MAX_INTAKE_BYTES

__all__ = [
    "RuntimeDep",
    "PlansDep",
    "RequestId",
    "RawBody",
    "read_limited",
    "allow",
    "authenticate",
    "csrf_token",
    "check_csrf",
    "PlanWriter",
    "PlanReevaluator",
    "PlanReader",
    "PlanLister",
    "PlanOverrider",
    "ReportHtmlReader",
    "ReportPdfReader",
    "SummaryReader",
    "PlanSigner",
    "PlanCommenter",
    "RulesReader",
    "AnyUser",
    "MAX_BODY_BYTES",
    "SAFE_METHODS",
]

MAX_BODY_BYTES = MAX_INTAKE_BYTES
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"

_bearer = HTTPBearer(auto_error=False, description="API token from `carepath users token EMAIL`.")
_cookie = APIKeyCookie(
    name=SESSION_COOKIE, auto_error=False, description="Browser session from POST /login (CSRF-protected)."
)


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_plans(rt: RuntimeDep) -> PlanService:
    return rt.plans()


PlansDep = Annotated[PlanService, Depends(get_plans)]


def get_request_id(request: Request) -> str:
    return request_id_of(request)


RequestId = Annotated[str, Depends(get_request_id)]


async def read_limited(request: Request, limit: int) -> bytes:
    """Reads the body until it passes ``limit`` bytes (then stops): the caller refuses it."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            break
    return b"".join(chunks)


async def read_raw_body(request: Request) -> bytes:
    """Reads at most MAX_BODY_BYTES + 1 bytes: enough for the parser to refuse an oversized body."""
    return (await read_limited(request, MAX_BODY_BYTES))[: MAX_BODY_BYTES + 1]


RawBody = Annotated[bytes, Depends(read_raw_body)]


async def authenticate(
    request: Request,
    rt: Runtime,
    bearer: HTTPAuthorizationCredentials | None,
    cookie: str | None,
) -> Principal:
    """Bearer token first, then the session cookie; AuthRequired when neither is valid."""
    header = request.headers.get("authorization")
    if header is not None:
        if bearer is None or not bearer.credentials or len(bearer.credentials) > 200:
            raise AuthRequired("Use 'Authorization: Bearer <token>'.")
        principal = await run_in_threadpool(
            principal_for_bearer, rt.db, bearer.credentials, rt.clock(), rt.settings.token_max_age_days
        )
        if principal is None:
            raise AuthRequired("The token is not valid (unknown, revoked or its user disabled).")
        return principal
    if cookie:
        principal = await run_in_threadpool(principal_for_session, rt.db, cookie, rt.clock())
        if principal is None:
            raise AuthRequired("Your session has ended; sign in again.")
        return principal
    raise AuthRequired()


async def check_csrf(request: Request, rt: Runtime, principal: Principal) -> None:
    """Cookie-authenticated unsafe requests must echo the CSRF token (header or form field)."""
    if principal.via != "session" or request.method in SAFE_METHODS:
        return
    submitted = request.headers.get(CSRF_HEADER)
    if submitted is None and _is_form(request):
        submitted = str((await request.form()).get(CSRF_FIELD) or "") or None
    if not csrf_matches(csrf_for_session(rt.secret, principal.session_token or ""), submitted):
        raise CsrfFailed()


def _is_form(request: Request) -> bool:
    ctype = request.headers.get("content-type", "")
    return ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data"))


def csrf_token(request: Request) -> str:
    """The CSRF token to embed in a form (``csrf_token(request)`` in templates)."""
    rt = get_runtime(request)
    principal = getattr(request.state, "principal", None)
    if isinstance(principal, Principal) and principal.session_token:
        return csrf_for_session(rt.secret, principal.session_token)
    pre = request.cookies.get(LOGIN_CSRF_COOKIE) or getattr(request.state, "login_csrf_cookie", None)
    return csrf_for_login(rt.secret, pre) if pre else ""


def allow(action: str) -> Callable[..., Awaitable[Caller]]:
    """A dependency: the authenticated Caller if their role may do ``action``."""

    async def dependency(
        request: Request,
        rt: RuntimeDep,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        cookie: Annotated[str | None, Depends(_cookie)],
    ) -> Caller:
        rid = request_id_of(request)
        plan_id = request.path_params.get("plan_id")
        audited = action in AUDITED
        try:
            principal = await authenticate(request, rt, bearer, cookie)
        except AuthRequired:
            if audited:
                await run_in_threadpool(audit_anonymous, rt, rid, action, "unauthenticated", plan_id)
            raise
        await enforce_account_rate(rt, principal)  # 429 past CAREPATH_RATE_PER_ACCOUNT
        request.state.principal = principal
        request.state.user_id = principal.user.id
        caller = Caller(principal, rid)
        try:
            await check_csrf(request, rt, principal)
        except CsrfFailed:
            if audited:
                await run_in_threadpool(rt.plans().record, caller, action, "denied", plan_id)
            raise
        if not allowed(action, principal.user.role):
            if audited:
                await run_in_threadpool(rt.plans().record, caller, action, "denied", plan_id)
            raise Forbidden()
        return caller

    dependency.__name__ = f"allow_{action.replace('.', '_')}"
    return dependency


PlanWriter = Annotated[Caller, Depends(allow("plan.create"))]
PlanReevaluator = Annotated[Caller, Depends(allow("plan.reevaluate"))]
PlanReader = Annotated[Caller, Depends(allow("plan.read"))]
PlanLister = Annotated[Caller, Depends(allow("plan.list"))]
PlanOverrider = Annotated[Caller, Depends(allow("plan.override"))]
ReportHtmlReader = Annotated[Caller, Depends(allow("plan.report_html"))]
ReportPdfReader = Annotated[Caller, Depends(allow("plan.report_pdf"))]
SummaryReader = Annotated[Caller, Depends(allow("overrides.summary"))]
RulesReader = Annotated[Caller, Depends(allow("rules.read"))]
AnyUser = Annotated[Caller, Depends(allow("openapi.read"))]
PlanSigner = Annotated[Caller, Depends(allow("plan.sign"))]
PlanCommenter = Annotated[Caller, Depends(allow("plan.comment"))]
