"""/health (no authentication, no patient data), /v1/rules and /openapi.json."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from carepath.api.deps import AnyUser, RulesReader, RuntimeDep
from carepath.api.health import readiness
from carepath.api.schemas import ErrorBody, Health, RuleCatalogue

router = APIRouter()


def package_version() -> str:
    try:
        return version("carepath")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0+unknown"


@router.get(
    "/health",
    name="health",
    tags=["system"],
    response_model=Health,
    summary="Liveness and readiness (no authentication; no patient data)",
    responses={
        503: {"model": Health, "description": "Not ready: database, disk or audit file (see checks)."}
    },
)
async def health(rt: RuntimeDep) -> JSONResponse:
    ready = await run_in_threadpool(readiness, rt)  # real round trip, write lock, disk (api.health)
    pack = rt.engine.pack
    body = Health(
        status="ok" if ready.ok else "degraded",
        database="ok" if ready.database == "ok" else "unreachable",
        ruleset={"id": pack.id, "version": pack.version, "sha256": pack.sha256},
        version=package_version(),
    )
    detail = {"checks": {"database": ready.database, "disk": ready.disk, "audit": ready.audit}}
    return JSONResponse(body.model_dump(mode="json") | detail, status_code=200 if ready.ok else 503)


@router.get(
    "/health/live",
    name="health.live",
    tags=["system"],
    summary="Liveness: the process answers (no checks; use /health for readiness)",
)
async def live() -> dict[str, str]:
    return {"status": "alive"}


@router.get(
    "/v1/rules",
    name="rules.read",
    tags=["rules"],
    response_model=RuleCatalogue,
    summary="The loaded rule pack: every active rule with its citations",
    responses={401: {"model": ErrorBody}},
)
def rules(caller: RulesReader, rt: RuntimeDep) -> RuleCatalogue:
    return RuleCatalogue.of(rt.engine.pack)


@router.get(
    "/openapi.json",
    name="openapi.read",
    tags=["system"],
    summary="This API's OpenAPI document (authenticated)",
    responses={401: {"model": ErrorBody}},
)
def openapi(caller: AnyUser, request: Request) -> dict[str, Any]:
    return request.app.openapi()  # type: ignore[no-any-return]
