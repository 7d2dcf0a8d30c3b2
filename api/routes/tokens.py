"""/v1/tokens: list, mint and revoke API tokens over HTTP (one by one).

- ``GET /v1/tokens``: your tokens (an admin: every token of the organisation), metadata only:
  id, label, owner, created, expires, revoked. A token itself is never shown again.
- ``POST /v1/tokens`` ``{"label", "days"}``: a new token for yourself, shown once (201). Only
  from a signed-in browser session (password, and TOTP if enrolled), never with a bearer
  token: a stolen token cannot mint itself a successor. Lifetime at most
  ``CAREPATH_TOKEN_MAX_AGE_DAYS``.
- ``DELETE /v1/tokens/{token_id}``: revoke one of your tokens (an admin: any of the
  organisation's); 404 for anything else. Takes effect on the next request.
Every call is audited (``token.list``, ``token.create``, ``token.revoke``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from carepath.api.audit import AuditEvent, record_event
from carepath.api.auth import DEFAULT_TOKEN_DAYS
from carepath.api.deps import RawBody, RuntimeDep, allow
from carepath.api.errors import Forbidden, InvalidRequest, NotFound
from carepath.api.runtime import Runtime
from carepath.api.security import new_api_token, token_sha256
from carepath.api.service import Caller
from carepath.engine.errors import FieldProblem, problems_from_validation

router = APIRouter(tags=["tokens"])

TokenLister = Annotated[Caller, Depends(allow("token.list"))]
TokenMinter = Annotated[Caller, Depends(allow("token.create"))]
TokenRevoker = Annotated[Caller, Depends(allow("token.revoke"))]


class TokenInfo(BaseModel):
    token_id: int
    label: str
    owner: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    active: bool


class TokenList(BaseModel):
    items: list[TokenInfo]


class NewTokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str = Field(min_length=1, max_length=100, pattern=r"^[\w .:/-]+$")
    days: int | None = Field(default=None, ge=1, le=3650)


class NewTokenOut(BaseModel):
    token_id: int
    token: str = Field(description="Shown once. Use as 'Authorization: Bearer <token>'.")
    expires_at: datetime


def _audit(rt: Runtime, caller: Caller, action: str, outcome: str, detail: str | None = None) -> None:
    user = caller.user
    record_event(
        rt.audit,
        rt.db,
        AuditEvent(action, outcome, caller.request_id, user.id, user.org_id, None, None, detail),
    )


def _info(row: dict[str, Any], now: datetime, max_days: int) -> TokenInfo:
    expires = row["expires_at"] or row["created_at"] + timedelta(days=max_days)
    return TokenInfo(
        token_id=row["id"],
        label=row["label"],
        owner=row["email"],
        created_at=row["created_at"],
        expires_at=expires,
        revoked_at=row["revoked_at"],
        active=row["revoked_at"] is None and expires > now,
    )


@router.get("/v1/tokens", name="token.list", response_model=TokenList, summary="Your API tokens (metadata)")
def list_tokens(caller: TokenLister, rt: RuntimeDep) -> TokenList:
    user = caller.user
    with rt.db.transaction(readonly=True) as tx:
        rows = tx.tokens_of(user.org_id, None if user.role == "admin" else user.id)
    _audit(rt, caller, "token.list", "ok")
    now = rt.clock()
    return TokenList(items=[_info(r, now, rt.settings.token_max_age_days) for r in rows])


@router.post(
    "/v1/tokens", name="token.create", status_code=201, response_model=NewTokenOut, summary="Mint a token"
)
async def create_token(caller: TokenMinter, rt: RuntimeDep, body: RawBody) -> NewTokenOut:
    if caller.principal.via != "session":
        await run_in_threadpool(_audit, rt, caller, "token.create", "denied", "bearer token may not mint")
        raise Forbidden("Mint tokens from a signed-in session (or `carepath users token`), not with a token.")
    try:
        data = NewTokenIn.model_validate_json(body or b"{}")
    except ValidationError as exc:
        problems = [FieldProblem(f"body.{p.field}", p.message) for p in problems_from_validation(exc)]
        raise InvalidRequest(problems) from None
    most = rt.settings.token_max_age_days or DEFAULT_TOKEN_DAYS
    now = rt.clock()
    expires = now + timedelta(days=min(data.days or most, most))
    token = new_api_token()

    def store() -> int:
        with rt.db.transaction() as tx:
            token_id = tx.add_token(caller.user.id, token_sha256(token), data.label, now, expires)
        _audit(rt, caller, "token.create", "ok", f"token_id={token_id}")
        return token_id

    token_id = await run_in_threadpool(store)
    return NewTokenOut(token_id=token_id, token=token, expires_at=expires)


@router.delete("/v1/tokens/{token_id}", name="token.revoke", status_code=204, summary="Revoke one token")
def revoke_token(token_id: int, caller: TokenRevoker, rt: RuntimeDep) -> None:
    user = caller.user
    with rt.db.transaction() as tx:
        n = tx.revoke_token(token_id, user.org_id, None if user.role == "admin" else user.id, rt.clock())
    _audit(rt, caller, "token.revoke", "ok" if n else "not_found", f"token_id={token_id}")
    if not n:
        raise NotFound("No such active token of yours.")
