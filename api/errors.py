"""HTTP errors without patient data.

Every error body is JSON ``{"error": code, "message": text, "request_id": id}``; invalid input
is 422 ``{"errors": [{"field", "message"}], "request_id": id}`` naming the field and what is
expected, never the submitted value (FastAPI's default 422 handler, which echoes input, is
replaced). Anything unexpected becomes a generic 500 in ``api.middleware`` (class name logged,
never the message, which may quote data).

    ServiceError
    ├── InvalidRequest     422  one FieldProblem per offending field
    ├── AuthRequired       401  no, unknown, expired or revoked credentials
    ├── Forbidden          403  authenticated, but the role may not do this
    │   └── CsrfFailed     403  cookie-authenticated unsafe request without a valid CSRF token
    ├── NotFound           404  unknown id, or a plan of another organisation (never 403)
    ├── Conflict           409  idempotency key reused with another body; plan already superseded
    ├── EngineRefused      500  the rules engine refused the intake (no plan stored)
    └── ReportsUnavailable 503  the report renderer is not installed in this build
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from carepath.engine import IntakeError
from carepath.engine.errors import FieldProblem, problems_from_validation

__all__ = [
    "ServiceError",
    "InvalidRequest",
    "AuthRequired",
    "Forbidden",
    "CsrfFailed",
    "NotFound",
    "Conflict",
    "EngineRefused",
    "ReportsUnavailable",
    "install_error_handlers",
    "request_id_of",
    "problems_of",
]


class ServiceError(Exception):
    status = 500
    code = "error"
    message = "The request failed."

    def __init__(self, message: str | None = None, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message or self.message)
        if message:
            self.message = message
        self.headers = headers or {}


class InvalidRequest(ServiceError):
    status, code, message = 422, "invalid_request", "The request is not valid."

    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__()
        self.problems = problems


class AuthRequired(ServiceError):
    status, code, message = 401, "unauthenticated", "Authentication required."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer realm="carepath"'})


class Forbidden(ServiceError):
    status, code, message = 403, "forbidden", "Your role does not allow this."


class CsrfFailed(Forbidden):
    code, message = "csrf_failed", "Missing or invalid CSRF token; reload the page and try again."


class NotFound(ServiceError):
    status, code, message = 404, "not_found", "No such plan."


class Conflict(ServiceError):
    status, code = 409, "conflict"

    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.extra = extra


class EngineRefused(ServiceError):
    status, code = 500, "engine_refused"
    message = "The rules engine could not produce a safe plan for this intake; nothing was stored."


class ReportsUnavailable(ServiceError):
    status, code = 503, "reports_unavailable"
    message = "Report rendering is not available in this build yet; the plan itself is available as JSON."


def request_id_of(request: Request) -> str:
    return str(getattr(request.state, "request_id", "-"))


def problems_of(problems: list[FieldProblem]) -> list[dict[str, str]]:
    return [{"field": p.field, "message": p.message} for p in problems]


def _json(
    request: Request, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Response:
    body["request_id"] = request_id_of(request)
    return JSONResponse(body, status_code=status, headers=headers)


def _wants_html(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/html" in accept and "application/json" not in accept


_LOGIN_HINT = (
    "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Sign in required - carepath</title>"
    "</head><body><main><h1>Sign in required</h1><p>{message}</p>"
    "<p><a href='/login'>Sign in to carepath</a></p></main></body></html>"
)


async def _service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    if isinstance(exc, InvalidRequest):
        return _json(request, 422, {"errors": problems_of(exc.problems)})
    if exc.status == 401 and _wants_html(request):
        return HTMLResponse(_LOGIN_HINT.format(message=exc.message), status_code=401, headers=exc.headers)
    body: dict[str, Any] = {"error": exc.code, "message": exc.message}
    if isinstance(exc, Conflict):
        body.update(exc.extra)
    return _json(request, exc.status, body, exc.headers)


async def _intake_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, IntakeError)
    return _json(request, 422, {"errors": problems_of(exc.problems)})


class _NoInput:
    """Adapts FastAPI's validation errors to engine.errors.problems_from_validation."""

    def __init__(self, errors: Any) -> None:
        self._errors = errors

    def errors(self, **_: Any) -> list[dict[str, Any]]:
        return [{k: v for k, v in dict(e).items() if k in ("type", "loc", "ctx")} for e in self._errors]


def _where(loc: Any) -> str:
    return str(loc[0]) if loc else "request"


def validation_problems(errors: Any) -> list[FieldProblem]:
    problems = problems_from_validation(_NoInput(errors))
    fixed = []
    for p, err in zip(problems, list(errors) + [None] * len(problems), strict=False):
        if p.field == "(intake)" and err is not None:
            p = FieldProblem(
                _where(err.get("loc")), p.message.replace("expected a JSON object", "").strip(" :")
            )
        fixed.append(p)
    return fixed


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return _json(request, 422, {"errors": problems_of(validation_problems(exc.errors()))})


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "too_large", 400: "bad_request"}


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "error")
    message = "No such route." if exc.status_code == 404 else f"HTTP {exc.status_code}."
    return _json(request, exc.status_code, {"error": code, "message": message}, dict(exc.headers or {}))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(IntakeError, _intake_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
