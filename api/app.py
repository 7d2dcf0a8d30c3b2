"""The app factory. ``create_app(settings)`` builds nothing heavy: the database, the rules
engine (one per process) and the audit sink are built in the lifespan, on startup.

Fakes for tests go in through the keyword arguments (``engine=``, ``audit_sink=``,
``clock=``); ``carepath serve`` uses ``app_from_env`` (settings from the environment).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.concurrency import run_in_threadpool

from carepath.api.audit import AuditSink
from carepath.api.cors import CdsCorsMiddleware
from carepath.api.deps import csrf_token
from carepath.api.errors import install_error_handlers
from carepath.api.hardening import install as install_hardening
from carepath.api.middleware import ServiceMiddleware
from carepath.api.overload import install_overload
from carepath.api.routes import overrides, plans, session, system
from carepath.api.runtime import build_runtime, checked_rulepack
from carepath.api.schemas import OverrideIn
from carepath.api.settings import Settings
from carepath.engine import Engine, Intake, RulePackError

__all__ = ["create_app", "app_from_env", "route_table", "RouteInfo", "API_TITLE"]

API_TITLE = "carepath"
API_DESCRIPTION = """Draft care pathways for opioid use disorder, from cited rules.

Every plan is a DRAFT that requires clinician review. Authenticate with
`Authorization: Bearer <token>` (`carepath users token EMAIL`) or a browser session
(`POST /login`; unsafe requests then need the `X-CSRF-Token` header or a `csrf_token` field).
Errors never echo submitted values; 422 bodies list `{field, message}` per offending field.
"""


def _routers() -> list[APIRouter]:
    """Every router of the service. The web form, FHIR and CDS Hooks routers are added here."""
    from carepath.api import web
    from carepath.api.routes import cds, disclosures, fhir, tokens

    return [
        system.router,
        session.router,
        plans.router,
        overrides.router,
        fhir.router,
        cds.router,
        web.router,
        tokens.router,  # hardening: API tokens over HTTP
        disclosures.router,  # hardening: Part 2 consent and accounting of disclosures
    ]


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    audit_sink: AuditSink | None = None,
    clock: Callable[[], datetime] | None = None,
    extra_routers: Sequence[APIRouter] = (),
) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await run_in_threadpool(
            lambda: build_runtime(
                settings,
                engine=engine,
                audit_sink=audit_sink,
                clock=clock,
                template_globals={"csrf_token": csrf_token},
            )
        )
        app.state.runtime = runtime
        try:
            yield
        finally:
            runtime.close()

    from carepath.api.routes.system import package_version

    app = FastAPI(
        title=API_TITLE,
        version=package_version(),
        description=API_DESCRIPTION,
        lifespan=lifespan,
        openapi_url=None,  # served by an authenticated route instead (api.routes.system)
        docs_url=None,  # Swagger UI loads scripts from a CDN: not under our CSP
        redoc_url=None,
    )
    app.state.settings = settings
    # later middleware is outer: ServiceMiddleware (request ids, headers) wraps the hardening
    # limits (size, time, rate), which wrap the overload queue (bounded concurrency)
    install_overload(app, settings)
    install_hardening(app, settings)
    app.add_middleware(ServiceMiddleware)
    app.add_middleware(CdsCorsMiddleware, allowed_origins=settings.cds_allowed_origins)
    install_error_handlers(app)
    for router in [*_routers(), *extra_routers]:
        app.include_router(router)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def app_from_env() -> FastAPI:
    """Factory for uvicorn (``carepath serve``): settings from CAREPATH_* / DATABASE_URL.

    Runs in every worker process, so each configures its own logging (the access log). Refuses to
    start on a rule pack that does not load and lint clean: one line on stderr and exit code 1 (no
    traceback), before the server binds its port."""
    from carepath.api.logs import configure_logging

    settings = Settings()
    configure_logging(settings.log_level)
    try:
        checked_rulepack(settings)
    except RulePackError as exc:
        print(f"carepath: rule pack refused: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    return create_app(settings)


@dataclass(frozen=True)
class RouteInfo:
    method: str
    path: str
    name: str


def route_table(app: FastAPI) -> list[RouteInfo]:
    """Every (method, path) the app serves, through included routers (for the route-walk test).
    Mounts (static files) appear with method "MOUNT"."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: included routes are flattened into app.routes
        contexts: list[Any] = list(app.routes)
    else:
        contexts = list(iter_route_contexts(app.routes))
    out = []
    for ctx in contexts:
        path = getattr(ctx, "path", None)
        methods = getattr(ctx, "methods", None)
        if path is None:
            raise TypeError(f"route without a path: {ctx!r}; walk it explicitly")
        if methods is None:  # a Mount (e.g. /static): listed as method "MOUNT"
            out.append(RouteInfo("MOUNT", path, str(getattr(ctx, "name", ""))))
            continue
        for method in sorted(set(methods) - {"HEAD", "OPTIONS"}):
            out.append(RouteInfo(method, path, str(getattr(ctx, "name", ""))))
    return sorted(out, key=lambda r: (r.path, r.method))


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (Intake, OverrideIn):
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in body.pop("$defs", {}).items():
            if name in components and components[name] != sub:
                raise RuntimeError(f"OpenAPI schema name clash: {name}")
            components[name] = sub
        components[model.__name__] = body
    app.openapi_schema = schema
    return schema
