"""The clinician web form: server-rendered Jinja2 (autoescape, StrictUndefined), no JavaScript.

    GET  /                              the intake form (session login; clinicians)
    POST /                              evaluate + store (PlanService.create, audited) -> 303 plan page
    GET  /plans                         the worklist: the organisation's plans (status, patient, alerts)
    POST /plans                         the worklist searched by patient name or MRN (never in the URL)
    GET  /plans/{plan_id}               the plan: who, at a glance, pathway with decisions, sign-off
    POST /plans/{plan_id}/overrides     a decision on one line: accept, modify (text/dose), decline
    POST /plans/{plan_id}/missing       answer a missing-information row (new version) or mark it N/A
    POST /plans/{plan_id}/sign          sign this version (clinicians)
    POST /plans/{plan_id}/comments      a review comment (reviewers and clinicians)
    POST /plans/{plan_id}/amend         a new draft version of a signed plan (same intake)
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
from datetime import date
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
from carepath.api.form_checks import clinician_message, date_warning, intake_with_problems
from carepath.api.intake_fields import (
    EXPLICIT_NONE,
    FIELD_BY_PATH,
    FIELDS,
    GROUPS,
    NONE_OPTION,
    choice_label,
    field_for_problem,
)
from carepath.api.missing_answers import NOT_APPLICABLE, answered_intake, missing_controls, stored_values
from carepath.api.policy import allowed
from carepath.api.records import PlanFilter, PlanRecord
from carepath.api.routes.plans import override_request
from carepath.api.runtime import Runtime
from carepath.api.schemas import OverrideIn, SignIn
from carepath.api.service import Caller, OverrideRequest, PlanService, PlanView, SignRequest
from carepath.api.settings import SESSION_COOKIE
from carepath.engine import IntakeError
from carepath.engine.errors import FieldProblem, problems_from_validation
from carepath.engine.labels import field_label
from carepath.reports.patient import patient_from_intake
from carepath.reports.view import clinician_view

__all__ = ["router", "STATIC_DIR", "STYLESHEET"]

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
STATIC_PREFIX = "/static"
STYLESHEET = f"{STATIC_PREFIX}/carepath.css"

WORKLIST_PAGE = 25
_FORM_ID = re.compile(r"^(loc|[a-z_]{1,40}-\d{1,3})$")
"""Decision forms are numbered "<step>-<n>" (the anchor the page returns to) or "loc"."""


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
        "home_href": "/" if allowed("form.use", caller.user.role) else "/plans",
        "worklist_href": "/plans" if allowed("plan.list", caller.user.role) else None,
        "form_href": "/" if allowed("form.use", caller.user.role) else None,
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
PlanLister = Annotated[Caller, _web("plan.list")]
PlanOverrider = Annotated[Caller, _web("plan.override")]
PlanReevaluator = Annotated[Caller, _web("plan.reevaluate")]
PlanSigner = Annotated[Caller, _web("plan.sign")]
PlanCommenter = Annotated[Caller, _web("plan.comment")]

router = APIRouter(include_in_schema=False, tags=["web form"])


# ---------------------------------------------------------------- the intake form


def _form_lists(form: FormData) -> dict[str, list[str]]:
    return {key: [str(v) for v in form.getlist(key)] for key in form if key in FIELD_BY_PATH}


def _split(problems: list[FieldProblem]) -> tuple[dict[str, str], list[str]]:
    by_field: dict[str, str] = {}
    general: list[str] = []
    for p in problems:
        path = field_for_problem(p.field)
        message = clinician_message(p)
        if path is None:
            general.append(f"{_field_label(p.field)}: {message}")
        elif path not in by_field:
            by_field[path] = message
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
    today: date | None = None,
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
        explicit_none=EXPLICIT_NONE,
        max_date=(today or date.today()).isoformat(),
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
    return _form_page(request, caller, values, general=notice, today=plans.clock().date())


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
    today = plans.clock().date()
    intake, problems = intake_with_problems(values, today)
    href = f"/plans/{previous.id}/edit" if previous else "/"
    key = str(form.get("form_key") or "") or None

    def again(status: int, problems: Sequence[FieldProblem] = (), general: Sequence[str] = ()) -> Response:
        return _form_page(
            request,
            caller,
            values,
            problems=problems,
            general=general,
            status=status,
            action_href=href,
            previous=previous,
            today=today,
        )

    if problems:  # nothing reaches the engine, nothing is stored
        plans.record(caller, action, "invalid", previous.id if previous else None)
        return again(422, problems)
    try:
        record = _store(plans, caller, intake, key, previous)
    except (IntakeError, InvalidRequest) as exc:
        return again(422, exc.problems)
    except Conflict as exc:
        return again(409, general=[exc.message])
    except EngineRefused as exc:
        return again(500, general=[exc.message])
    return RedirectResponse(f"/plans/{record.id}", status_code=303)


def _store(
    plans: PlanService, caller: Caller, intake: Any, key: str | None, previous: PlanRecord | None
) -> PlanRecord:
    if previous is None:
        return plans.create(caller, intake, idempotency_key=key)[0]
    return plans.reevaluate(caller, previous.id, intake, idempotency_key=key)[0]


@router.post("/", name="web.submit", response_class=HTMLResponse)
async def submit_form(request: Request, caller: PlanCreator, plans: PlansDep) -> Response:
    form = await request.form()
    return await run_in_threadpool(_submit, request, caller, plans, form, action="plan.create")


# ---------------------------------------------------------------- the worklist


_WORKLIST_STATUSES = {"draft": "Draft", "signed": "Signed"}


def _worklist(
    request: Request,
    caller: Caller,
    plans: PlanService,
    rt: Runtime,
    query: Mapping[str, str],
    *,
    searched: bool,
) -> HTMLResponse:
    status = query.get("status") if query.get("status") in _WORKLIST_STATUSES else None
    patient = (query.get("patient") or "").strip()[:200] or None
    mine = query.get("mine") == "1"
    cursor = (query.get("cursor") or "")[:200] or None
    flt = PlanFilter(status=status, patient=patient, author_id=caller.user.id if mine else None)
    problem = None
    try:
        items, next_cursor = plans.list_plans(caller, flt, limit=WORKLIST_PAGE, cursor=cursor)
    except InvalidRequest:
        items, next_cursor, problem = [], None, "That page of the list is no longer available; start again."
    return _page(
        request,
        caller,
        "worklist.html",
        title="Plans",
        items=items,
        next_cursor=next_cursor,
        status_filter=status,
        statuses=_WORKLIST_STATUSES,
        patient=patient or "",
        mine=mine,
        searched=searched,
        problem=problem,
        level_labels=_labels(rt),
        first_page=cursor is None,
    )


@router.get("/plans", name="web.worklist", response_class=HTMLResponse)
def worklist(request: Request, caller: PlanLister, plans: PlansDep, rt: RuntimeDep) -> HTMLResponse:
    return _worklist(request, caller, plans, rt, dict(request.query_params), searched=False)


@router.post("/plans", name="web.search", response_class=HTMLResponse)
async def worklist_search(
    request: Request, caller: PlanLister, plans: PlansDep, rt: RuntimeDep
) -> HTMLResponse:
    form = await request.form()
    query = {k: str(form.get(k) or "") for k in ("patient", "status", "mine", "cursor")}
    return await run_in_threadpool(_worklist, request, caller, plans, rt, query, searched=True)


# ---------------------------------------------------------------- the plan page


def _links(view: PlanView, caller: Caller) -> dict[str, str | None]:
    record = view.record
    base = f"/v1/plans/{record.id}"
    latest = record.next_id is None
    may_write = allowed("plan.reevaluate", caller.user.role)
    return {
        "pdf": f"{base}/report.pdf",
        "html": f"{base}/report.html",
        "patient": f"{base}/report.pdf",
        "patient_html": f"{base}/report.html?audience=patient",
        "fhir": f"{base}/fhir",
        "edit": f"/plans/{record.id}/edit" if latest and may_write else None,
        "amend": f"/plans/{record.id}/amend" if latest and may_write and view.signed else None,
        "sign": f"/plans/{record.id}/sign"
        if latest and not view.signed and allowed("plan.sign", caller.user.role)
        else None,
        "comment": f"/plans/{record.id}/comments" if allowed("plan.comment", caller.user.role) else None,
        "missing": f"/plans/{record.id}/missing" if latest and may_write else None,
    }


def _plan_page(
    request: Request,
    caller: Caller,
    view: PlanView,
    rt: Runtime,
    *,
    flash: str | None = None,
    errors: Mapping[str, str] | None = None,
    typed: Mapping[str, Mapping[str, str]] | None = None,
    status: int = 200,
) -> HTMLResponse:
    record, plan = view.record, view.plan
    intake = record.intake()
    recorded = view.recorded
    report = clinician_view(
        plan,
        rt.engine.pack,
        patient_from_intake(intake),
        intake=intake,
        recorded=recorded,
        with_appendix=True,
    )
    links = _links(view, caller)
    latest_unsigned = record.next_id is None and not view.signed
    return _page(
        request,
        caller,
        "plan.html",
        status,
        title=f"{'Signed' if view.signed else 'Draft'} care plan {record.id}",
        record=record,
        plan=plan,
        v=report,
        rec=recorded,
        intake=intake,
        links=links,
        evidence={it.code: it for it in report.appendix},
        jurisdiction_label=choice_label("jurisdiction", plan.jurisdiction),
        may_decide=latest_unsigned and allowed("plan.override", caller.user.role),
        missing_fields=missing_controls(plan) if links["missing"] else {},
        undecided=[ln for st in report.steps for ln in st.lines if ln.decision is None],
        errors=errors or {},
        typed=typed or {},
        flash=flash,
        date_warning=date_warning(plan.assessment_date, record.created_at.date()),
        languages=[("en", "English"), ("es", "Spanish"), ("de", "German")],
        language=intake.preferences.language or "en",
        plan_href=lambda pid: f"/plans/{pid}",
    )


def _labels(rt: Runtime) -> dict[str, str]:
    """Code -> the rule pack's label (levels of care, alerts) for the worklist."""
    return {code: c.label for code, c in rt.engine.pack.codes.items()}


_FLASHES = {
    "recorded": "Your decision was recorded.",
    "signed": "This version is signed. It can no longer change; amend it to make a new version.",
    "commented": "Your comment was added.",
    "marked": "Marked not applicable.",
    "answered": "Answer recorded: this is the new version of the plan, with your decisions carried over.",
    "amended": "New draft version made from the signed one; your decisions were carried over.",
}


@router.get("/plans/{plan_id}", name="web.plan", response_class=HTMLResponse)
def plan_page(
    plan_id: str, request: Request, caller: PlanReader, plans: PlansDep, rt: RuntimeDep, recorded: int = 0
) -> Response:
    view = plans.get(caller, plan_id)
    done = "recorded" if recorded else request.query_params.get("done", "")
    flash = _FLASHES.get(done)
    return _plan_page(request, caller, view, rt, flash=flash)


_DECISION_MESSAGES = {
    "reason": "Give the reason for this decision (required to decline).",
    "replacement_text": "Give the new wording or the dose.",
    "action": "Choose accept, modify or decline.",
    "replacement_kind": "Choose one of the listed kinds, or keep as is.",
}


def _decide(
    request: Request, caller: Caller, plans: PlanService, rt: Runtime, plan_id: str, form: FormData
) -> Response:
    form_id = str(form.get("form_id") or "")
    key = form_id if _FORM_ID.match(form_id) else "loc"
    fields = ("code", "action", "reason", "section", "phase", "replacement_text", "replacement_kind", "dose")
    typed = {k: str(form.get(k) or "") for k in fields}
    body = {k: v.strip() for k, v in typed.items() if v.strip()}
    problem: str | None = None
    try:
        checked = OverrideIn.model_validate(body)
    except ValidationError as exc:
        first = problems_from_validation(exc)[0]
        field = first.message.partition(":")[0] if first.field == "(intake)" else first.field
        problem = _DECISION_MESSAGES.get(field, f"{field}: {first.message}")
    if problem is None:
        try:
            plans.add_override(caller, plan_id, override_request(checked))
        except InvalidRequest as exc:
            problem = exc.problems[0].message if exc.problems else "This decision could not be recorded."
        except Conflict as exc:  # signed or superseded meanwhile: the forms are gone, say it on top
            view = plans.get(caller, plan_id)
            return _plan_page(request, caller, view, rt, errors={"page": exc.message}, status=409)
        else:
            anchor = f"#item-{form_id}" if _FORM_ID.match(form_id) and form_id != "loc" else "#level-of-care"
            return RedirectResponse(f"/plans/{plan_id}?recorded=1{anchor}", status_code=303)
    else:
        plans.record(caller, "plan.override", "invalid", plan_id)
    view = plans.get(caller, plan_id)
    return _plan_page(request, caller, view, rt, errors={key: problem}, typed={key: typed}, status=422)


@router.post("/plans/{plan_id}/overrides", name="web.override", response_class=HTMLResponse)
async def record_override(
    plan_id: str, request: Request, caller: PlanOverrider, plans: PlansDep, rt: RuntimeDep
) -> Response:
    return await _with_form(_decide, request, caller, plans, rt, plan_id)


async def _with_form(
    fn: Any, request: Request, caller: Caller, plans: PlanService, rt: Runtime, plan_id: str
) -> Response:
    """Read the posted form, then run the (blocking) handler off the event loop."""
    form = await request.form()
    return await run_in_threadpool(fn, request, caller, plans, rt, plan_id, form)  # type: ignore[no-any-return]


# ---------------------------------------------------------------- missing information


def _answer_missing(
    request: Request, caller: Caller, plans: PlanService, rt: Runtime, plan_id: str, form: FormData
) -> Response:
    field = str(form.get("field") or "")
    answers = [str(v) for v in form.getlist("answer") if str(v).strip()]
    view = plans.get(caller, plan_id)
    if field not in {m.field for m in view.plan.missing_information}:
        return _plan_page(request, caller, view, rt, errors={"missing": "Choose a listed field."}, status=422)
    if answers == [NOT_APPLICABLE]:
        reason = str(form.get("reason") or "").strip()[:2000] or "Not applicable to this patient."
        request_ = OverrideRequest(
            code=field, action="not_applicable", reason=reason, section="missing_information"
        )
        try:
            plans.add_override(caller, plan_id, request_)
        except (Conflict, InvalidRequest) as exc:
            return _plan_page(request, caller, view, rt, errors={"missing": _message(exc)}, status=409)
        return RedirectResponse(f"/plans/{plan_id}?done=marked#missing", status_code=303)
    intake, problem = answered_intake(view.record.intake(), field, answers, plans.clock().date())
    if problem is not None:
        plans.record(caller, "plan.reevaluate", "invalid", plan_id)
        return _plan_page(
            request, caller, view, rt, errors={"missing": problem, "missing_field": field}, status=422
        )
    try:
        record, _ = plans.reevaluate(caller, plan_id, intake)
    except (IntakeError, InvalidRequest) as exc:
        message = clinician_message(exc.problems[0]) if exc.problems else "This answer is not valid."
        return _plan_page(
            request, caller, view, rt, errors={"missing": message, "missing_field": field}, status=422
        )
    except Conflict as exc:
        return _plan_page(request, caller, view, rt, errors={"missing": exc.message}, status=409)
    return RedirectResponse(f"/plans/{record.id}?done=answered#missing", status_code=303)


def _message(exc: Exception) -> str:
    if isinstance(exc, InvalidRequest) and exc.problems:
        return exc.problems[0].message
    return str(getattr(exc, "message", "")) or "This could not be recorded."


@router.post("/plans/{plan_id}/missing", name="web.missing", response_class=HTMLResponse)
async def answer_missing(
    plan_id: str, request: Request, caller: PlanReevaluator, plans: PlansDep, rt: RuntimeDep
) -> Response:
    return await _with_form(_answer_missing, request, caller, plans, rt, plan_id)


# ---------------------------------------------------------------- sign-off, comments, amend


def _sign(
    request: Request, caller: Caller, plans: PlanService, rt: Runtime, plan_id: str, form: FormData
) -> Response:
    typed = {k: str(form.get(k) or "") for k in ("name", "credentials")}
    body: dict[str, Any] = {k: v.strip() for k, v in typed.items()}
    body["attest"] = form.get("attest") == "yes"
    problem = None
    try:
        data = SignIn.model_validate(body)
    except ValidationError as exc:
        field = problems_from_validation(exc)[0].field
        problem = {
            "name": "Give your name as it should print on the plan.",
            "attest": "Confirm that you have reviewed every line.",
        }.get(field, "Check the sign-off details.")
    if problem is None:
        try:
            plans.sign(caller, plan_id, SignRequest(data.name, data.credentials))
        except Conflict as exc:
            problem = exc.message
        else:
            return RedirectResponse(f"/plans/{plan_id}?done=signed", status_code=303)
    else:
        plans.record(caller, "plan.sign", "invalid", plan_id)
    view = plans.get(caller, plan_id)
    return _plan_page(request, caller, view, rt, errors={"sign": problem}, typed={"sign": typed}, status=422)


@router.post("/plans/{plan_id}/sign", name="web.sign", response_class=HTMLResponse)
async def sign_plan(
    plan_id: str, request: Request, caller: PlanSigner, plans: PlansDep, rt: RuntimeDep
) -> Response:
    return await _with_form(_sign, request, caller, plans, rt, plan_id)


def _comment(
    request: Request, caller: Caller, plans: PlanService, rt: Runtime, plan_id: str, form: FormData
) -> Response:
    text = str(form.get("text") or "").strip()
    if not text or len(text) > 2000:
        plans.record(caller, "plan.comment", "invalid", plan_id)
        view = plans.get(caller, plan_id)
        message = "Write the comment (up to 2000 characters)."
        return _plan_page(request, caller, view, rt, errors={"comment": message}, status=422)
    plans.comment(caller, plan_id, text)
    return RedirectResponse(f"/plans/{plan_id}?done=commented#comments", status_code=303)


@router.post("/plans/{plan_id}/comments", name="web.comment", response_class=HTMLResponse)
async def add_comment(
    plan_id: str, request: Request, caller: PlanCommenter, plans: PlansDep, rt: RuntimeDep
) -> Response:
    return await _with_form(_comment, request, caller, plans, rt, plan_id)


def _amend(request: Request, caller: Caller, plans: PlanService, rt: Runtime, plan_id: str) -> Response:
    try:
        record, _ = plans.reevaluate(caller, plan_id, None)
    except Conflict as exc:
        view = plans.get(caller, plan_id)
        return _plan_page(request, caller, view, rt, errors={"amend": exc.message}, status=409)
    return RedirectResponse(f"/plans/{record.id}?done=amended", status_code=303)


@router.post("/plans/{plan_id}/amend", name="web.amend", response_class=HTMLResponse)
async def amend_plan(
    plan_id: str, request: Request, caller: PlanReevaluator, plans: PlansDep, rt: RuntimeDep
) -> Response:
    await request.form()
    return await run_in_threadpool(_amend, request, caller, plans, rt, plan_id)


# ---------------------------------------------------------------- correct and re-evaluate


@router.get("/plans/{plan_id}/edit", name="web.edit", response_class=HTMLResponse)
def edit_page(plan_id: str, request: Request, caller: PlanReevaluator, plans: PlansDep) -> Response:
    view = plans.get(caller, plan_id)
    values = stored_values(view.record.intake())
    return _form_page(
        request,
        caller,
        values,
        action_href=f"/plans/{plan_id}/edit",
        previous=view.record,
        today=plans.clock().date(),
    )


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
