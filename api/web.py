"""The clinician web form: server-rendered Jinja2 (autoescape, StrictUndefined), no JavaScript.

    GET  /                              the intake form (session login; clinicians)
    POST /                              evaluate + store (PlanService.create, audited) -> 303 plan page
    GET  /plans/{plan_id}               the plan: alerts, level of care, phases, report links
    POST /plans/{plan_id}/overrides     record an edit or override of one line, with a reason
    GET  /plans/{plan_id}/edit          the form pre-filled with the stored intake
    POST /plans/{plan_id}/edit          re-evaluate: a new version linked to the old one
    GET  /static/{name}                 the stylesheet (no patient data; public, /login needs it too)

Routes are thin: they turn form fields into an intake (``api.intake_fields``) and call the
same ``PlanService`` as the JSON API. Field errors are shown next to their fields and never
quote what was typed; the user's own input is put back in the form (escaped).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.security import HTTPBearer
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException

from carepath.api.deps import PlansDep, RuntimeDep, allow, csrf_token
from carepath.api.errors import AuthRequired, Conflict, EngineRefused, InvalidRequest
from carepath.api.intake_fields import (
    FIELD_BY_PATH,
    FIELDS,
    GROUPS,
    NONE_OPTION,
    choice_label,
    field_for_problem,
    form_values,
)
from carepath.api.intake_fields import intake_from_form as fields_to_intake
from carepath.api.policy import allowed
from carepath.api.records import PlanRecord
from carepath.api.schemas import OverrideIn
from carepath.api.service import Caller, OverrideRequest, PlanService, PlanView
from carepath.api.settings import SESSION_COOKIE
from carepath.engine import IntakeError, parse_intake_obj
from carepath.engine.errors import FieldProblem, problems_from_validation
from carepath.engine.labels import field_label

__all__ = ["router", "STATIC_DIR", "STYLESHEET"]

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
STATIC_PREFIX = "/static"
STYLESHEET = f"{STATIC_PREFIX}/carepath.css"

PHASE_LABELS = {
    "withdrawal_management": "Withdrawal management",
    "level_of_care": "Level of care",
    "medication": "Medication",
    "medical": "Medical",
    "psychosocial": "Psychosocial",
    "dual_diagnosis": "Dual diagnosis",
    "harm_reduction": "Harm reduction",
    "aftercare": "Aftercare",
}
REPLACEMENT_KINDS = [
    ("recommend", "Recommend"),
    ("consider", "Consider"),
    ("caution", "Caution"),
    ("avoid", "Avoid (do not do)"),
    ("remove", "Remove from the plan"),
]
_FORM_ID = re.compile(r"^(loc|[a-z_]{1,40}-\d{1,3})$")


# ---------------------------------------------------------------- templates


@cache
def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(HERE / "templates")),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(choice_label=choice_label, field_label=_field_label, none_option=NONE_OPTION)
    return env


def _field_label(path: str) -> str:
    """A problem's field ("substance_use.opioids[1]") in the clinician's words."""
    return field_label(path.split("[", 1)[0])


def _page(request: Request, caller: Caller, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    base = {
        "title": "carepath",
        "static_href": STYLESHEET,
        "home_href": "/",
        "logout_href": "/logout" if caller.principal.via == "session" else None,
        "user": caller.user,
        "csrf_token": csrf_token(request),
    }
    html = _env().get_template(template).render({**base, **context})
    return HTMLResponse(html, status_code=status)


# ---------------------------------------------------------------- auth for pages


class _LoginRedirect(StarletteHTTPException):
    def __init__(self, path: str) -> None:
        super().__init__(303, headers={"Location": f"/login?next={quote(path, safe='/')}"})


def _web(action: str) -> Any:
    """Like ``api.deps.allow(action)``, but a browser GET without a session goes to the sign-in page
    (303); other unauthenticated calls get the API's 401."""
    inner = allow(action)
    bearer_scheme = HTTPBearer(auto_error=False)

    async def dependency(request: Request, rt: RuntimeDep) -> Caller:
        bearer = await bearer_scheme(request)
        try:
            return await inner(request, rt, bearer, request.cookies.get(SESSION_COOKIE))
        except AuthRequired:
            if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
                raise _LoginRedirect(request.url.path) from None
            raise

    dependency.__name__ = f"web_{action.replace('.', '_')}"
    return Depends(dependency)


FormUser = Annotated[Caller, _web("form.use")]
PlanCreator = Annotated[Caller, _web("plan.create")]
PlanReader = Annotated[Caller, _web("plan.read")]
PlanOverrider = Annotated[Caller, _web("plan.override")]
PlanReevaluator = Annotated[Caller, _web("plan.reevaluate")]

router = APIRouter(include_in_schema=False, tags=["web form"])


# ---------------------------------------------------------------- the intake form


def _form_lists(form: FormData) -> dict[str, list[str]]:
    return {key: [str(v) for v in form.getlist(key)] for key in form if key in FIELD_BY_PATH}


def _split(problems: list[FieldProblem]) -> tuple[dict[str, str], list[str]]:
    by_field: dict[str, str] = {}
    general: list[str] = []
    for p in problems:
        path = field_for_problem(p.field)
        if path is None:
            general.append(f"{_field_label(p.field)}: {p.message}")
        elif path not in by_field:
            by_field[path] = p.message
    return by_field, general


def _form_page(
    request: Request,
    caller: Caller,
    values: Mapping[str, list[str]],
    *,
    problems: Sequence[FieldProblem] = (),
    general: Sequence[str] = (),
    status: int = 200,
    action_href: str = "/",
    previous: PlanRecord | None = None,
) -> HTMLResponse:
    errors, more = _split(list(problems))
    title = "Correct intake and re-evaluate" if previous else "New OUD assessment"
    return _page(
        request,
        caller,
        "intake_form.html",
        status,
        title=("Error: " if errors or more or general else "") + title,
        heading=title,
        groups=GROUPS,
        values=values,
        errors=errors,
        error_fields=[f for f in FIELDS if f.path in errors],
        general_errors=[*general, *more],
        action_href=action_href,
        previous=previous,
        form_key=secrets.token_urlsafe(16),
    )


def _default_values(caller: Caller, plans: PlanService) -> dict[str, list[str]]:
    today = plans.clock().date().isoformat()
    return {"assessment_date": [today], "jurisdiction": ["US"]}


@router.get("/", name="web.form", response_class=HTMLResponse)
def form_page(
    request: Request, caller: FormUser, plans: PlansDep, rt: RuntimeDep, prefill: str | None = None
) -> HTMLResponse:
    values, notice = _default_values(caller, plans), []
    if prefill:  # a CDS Hooks card's link: the intake read from the chart (api/prefill.py)
        from carepath.api.prefill import prefilled_values

        found, notice = prefilled_values(rt, caller, prefill)
        values = {**values, **found}
    return _form_page(request, caller, values, general=notice)


def _submit(
    request: Request,
    caller: Caller,
    plans: PlanService,
    form: FormData,
    *,
    action: str,
    previous: PlanRecord | None = None,
) -> Response:
    values = _form_lists(form)
    intake, problems = fields_to_intake(values)
    href = f"/plans/{previous.id}/edit" if previous else "/"
    key = str(form.get("form_key") or "") or None
    if problems:  # not even the right types: nothing reaches the engine
        try:
            parse_intake_obj(intake)
        except IntakeError as exc:
            seen = {p.field for p in problems}
            problems += [p for p in exc.problems if field_for_problem(p.field) not in seen]
        plans.record(caller, action, "invalid", previous.id if previous else None)
        return _form_page(
            request, caller, values, problems=problems, status=422, action_href=href, previous=previous
        )
    try:
        if previous is None:
            record, _ = plans.create(caller, intake, idempotency_key=key)
        else:
            record, _ = plans.reevaluate(caller, previous.id, intake, idempotency_key=key)
    except IntakeError as exc:
        return _form_page(
            request, caller, values, problems=exc.problems, status=422, action_href=href, previous=previous
        )
    except InvalidRequest as exc:
        return _form_page(
            request, caller, values, problems=exc.problems, status=422, action_href=href, previous=previous
        )
    except Conflict as exc:
        return _form_page(
            request, caller, values, general=[exc.message], status=409, action_href=href, previous=previous
        )
    except EngineRefused as exc:
        return _form_page(
            request, caller, values, general=[exc.message], status=500, action_href=href, previous=previous
        )
    return RedirectResponse(f"/plans/{record.id}", status_code=303)


@router.post("/", name="web.submit", response_class=HTMLResponse)
async def submit_form(request: Request, caller: PlanCreator, plans: PlansDep) -> Response:
    form = await request.form()
    return await run_in_threadpool(_submit, request, caller, plans, form, action="plan.create")


# ---------------------------------------------------------------- the plan page


def _links(record: PlanRecord, caller: Caller) -> dict[str, str | None]:
    base = f"/v1/plans/{record.id}"
    may_edit = record.next_id is None and allowed("plan.reevaluate", caller.user.role)
    return {
        "pdf": f"{base}/report.pdf",
        "html": f"{base}/report.html",
        "patient": f"{base}/report.html?audience=patient",
        "fhir": f"{base}/fhir",
        "edit": f"/plans/{record.id}/edit" if may_edit else None,
    }


def _plan_page(
    request: Request,
    caller: Caller,
    view: PlanView,
    *,
    flash: str | None = None,
    override_error: dict[str, str] | None = None,
    override_typed: dict[str, dict[str, str]] | None = None,
    status: int = 200,
) -> HTMLResponse:
    record, plan = view.record, view.plan
    by_code: dict[str, list[Any]] = {}
    for o in view.overrides:
        by_code.setdefault(o.code, []).append(o)
    return _page(
        request,
        caller,
        "plan.html",
        status,
        title=f"Draft care pathway {record.id}",
        record=record,
        plan=plan,
        links=_links(record, caller),
        phase_labels=PHASE_LABELS,
        code_labels=_code_labels(),
        jurisdiction_label=choice_label("jurisdiction", plan.jurisdiction),
        overrides_by_code=by_code,
        authors={caller.user.id: caller.user.email},
        override_href=f"/plans/{record.id}/overrides",
        may_override=allowed("plan.override", caller.user.role),
        replacement_kinds=REPLACEMENT_KINDS,
        override_error=override_error or {},
        override_typed=override_typed or {},
        flash=flash,
        plan_href=lambda pid: f"/plans/{pid}",
    )


def _code_labels() -> dict[str, str]:
    from carepath.api.fhir import code_labels

    return code_labels()


@router.get("/plans/{plan_id}", name="web.plan", response_class=HTMLResponse)
def plan_page(
    plan_id: str, request: Request, caller: PlanReader, plans: PlansDep, recorded: int = 0
) -> Response:
    view = plans.get(caller, plan_id)
    return _plan_page(
        request, caller, view, flash="Your change was recorded with its reason." if recorded else None
    )


_OVERRIDE_MESSAGES = {
    "reason": "Give the reason for this change (required).",
    "action": "Choose edit or override.",
    "replacement_kind": "Choose one of the listed kinds, or keep as is.",
}


def _override(request: Request, caller: Caller, plans: PlanService, plan_id: str, form: FormData) -> Response:
    form_id = str(form.get("form_id") or "")
    typed = {k: str(form.get(k) or "") for k in ("action", "replacement_kind", "replacement_text", "reason")}
    fields = {k: str(form.get(k) or "").strip() for k in ("code", "action", "reason", "section", "phase")}
    fields |= {k: v.strip() for k, v in typed.items() if k in ("replacement_text", "replacement_kind")}
    body = {k: v for k, v in fields.items() if v != "" or k == "reason"}
    problem: str | None = None
    try:
        checked = OverrideIn.model_validate(body)
    except ValidationError as exc:
        first = problems_from_validation(exc)[0]
        problem = _OVERRIDE_MESSAGES.get(first.field, f"{first.field}: {first.message}")
    if problem is None:
        try:
            plans.add_override(
                caller,
                plan_id,
                OverrideRequest(
                    code=checked.code,
                    action=checked.action,
                    reason=checked.reason,
                    section=checked.section,
                    phase=checked.phase,
                    replacement_text=checked.replacement_text,
                    replacement_kind=checked.replacement_kind,
                ),
            )
        except InvalidRequest as exc:
            problem = exc.problems[0].message if exc.problems else "This change could not be recorded."
        else:
            anchor = f"#item-{form_id}" if _FORM_ID.match(form_id) and form_id != "loc" else "#level-of-care"
            return RedirectResponse(f"/plans/{plan_id}?recorded=1{anchor}", status_code=303)
    else:
        plans.record(caller, "plan.override", "invalid", plan_id)
    view = plans.get(caller, plan_id)
    key = form_id if _FORM_ID.match(form_id) else "loc"
    return _plan_page(
        request, caller, view, override_error={key: problem}, override_typed={key: typed}, status=422
    )


@router.post("/plans/{plan_id}/overrides", name="web.override", response_class=HTMLResponse)
async def record_override(plan_id: str, request: Request, caller: PlanOverrider, plans: PlansDep) -> Response:
    form = await request.form()
    return await run_in_threadpool(_override, request, caller, plans, plan_id, form)


# ---------------------------------------------------------------- correct and re-evaluate


@router.get("/plans/{plan_id}/edit", name="web.edit", response_class=HTMLResponse)
def edit_page(plan_id: str, request: Request, caller: PlanReevaluator, plans: PlansDep) -> Response:
    view = plans.get(caller, plan_id)
    values = form_values(view.record.intake().model_dump(mode="json", exclude_none=True))
    return _form_page(request, caller, values, action_href=f"/plans/{plan_id}/edit", previous=view.record)


@router.post("/plans/{plan_id}/edit", name="web.reevaluate", response_class=HTMLResponse)
async def reevaluate(plan_id: str, request: Request, caller: PlanReevaluator, plans: PlansDep) -> Response:
    form = await request.form()
    view = await run_in_threadpool(plans.get, caller, plan_id)
    return await run_in_threadpool(
        _submit, request, caller, plans, form, action="plan.reevaluate", previous=view.record
    )


_STATIC_FILES = {"carepath.css": "text/css; charset=utf-8"}


@router.get("/static/{name}", name="web.static")
def static_file(name: str) -> Response:
    """The stylesheet: public (the sign-in page needs it too), no patient data, a fixed allow-list."""
    media = _STATIC_FILES.get(name)
    if media is None:
        raise StarletteHTTPException(404)
    return Response((STATIC_DIR / name).read_bytes(), media_type=media)
