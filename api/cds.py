"""CDS Hooks 2.0 ``patient-view``: read the chart, draft the OUD pathway, answer with cards to act on.

The pure part (no HTTP; ``api/routes/cds.py`` is the thin shell that authenticates, fetches and
stores):

    discovery()                   the service with its prefetch templates (Patient, Condition,
                                  MedicationRequest/-Statement, Observation, Encounter, and the
                                  carepath QuestionnaireResponse)
    parse_hook_request(raw)       the request body -> HookRequest (400/413 HookRequestError)
    prefetch_gaps(req)            the prefetch keys the EHR did not send (to fetch, or 412)
    chart_from_prefetch(values)   prefetch values -> (Chart, QuestionnaireResponse); refuses data
                                  about any other patient than context.patientId (400)
    intake_for(chart, qr, ...)    chart intake merged with the QuestionnaireResponse (it wins)
    cards_for(plan, ctx)          alert cards, the pathway card, the missing-information card:
                                  written summaries (< 140 characters), indicator, source {label,
                                  url, topic}, links (carepath; SMART where configured),
                                  suggestions (naloxone MedicationRequest in RxNorm, MOUD
                                  proposals, referrals as ServiceRequest), overrideReasons
    missing_card(ctx)             the card when no plan can be drafted (e.g. no age)

Prefetch semantics (CDS Hooks 2.0): an absent key means "not sent" (the service may fetch it);
``null`` means "the EHR has no such data". Cards carry no patient data beyond the EHR's own
patient id inside suggested orders; errors never quote the request.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from carepath.api.chart import Chart, ChartIntake, merge_intakes
from carepath.api.fhir import (
    QUESTIONNAIRE_URL,
    FhirInputError,
    intake_from_questionnaire_response,
    questionnaire_response_from_bundle,
)
from carepath.api.fhir_plan import (
    CODE_SYSTEM,
    medication_codes,
    medication_proposal,
    service_codes,
    service_proposal,
)
from carepath.api.terminology import chart_valuesets, outputs
from carepath.engine import CarePlan, FieldProblem, Intake, IntakeError, parse_intake_obj
from carepath.engine.plan import Alert, Item

__all__ = [
    "SERVICE_ID",
    "HOOK",
    "MAX_REQUEST_BYTES",
    "PREFETCH",
    "REQUIRED_KEYS",
    "HookRequestError",
    "HookRequest",
    "CardContext",
    "IssuedCard",
    "discovery",
    "parse_hook_request",
    "prefetch_gaps",
    "chart_from_prefetch",
    "intake_for",
    "cards_for",
    "missing_card",
    "fit_summary",
    "response_body",
]

SERVICE_ID = "carepath-oud-pathway"
HOOK = "patient-view"
MAX_REQUEST_BYTES = 4 * 1024 * 1024
SUMMARY_LIMIT = 139
"""Card summaries are fewer than 140 characters (CDS Hooks 2.0 card.summary)."""
TOP_LINES = 6


def _observation_codes() -> str:
    codes = [
        f"{e.system}|{e.code}"
        for vs in chart_valuesets()["observations"].values()
        for e in vs.include
        if e.system == "http://loinc.org" and e.code
    ]
    return ",".join(dict.fromkeys(codes))


def _prefetch() -> dict[str, str]:
    p = "{{context.patientId}}"
    return {
        "patient": f"Patient/{p}",
        "conditions": f"Condition?patient={p}",
        "medicationRequests": f"MedicationRequest?patient={p}&status=active",
        "medicationStatements": f"MedicationStatement?patient={p}&status=active",
        "observations": f"Observation?patient={p}&code={_observation_codes()}&_sort=-date&_count=100",
        "assessments": f"Observation?patient={p}&category=survey&_sort=-date&_count=50",
        "encounters": f"Encounter?patient={p}&_sort=-date&_count=50",
        "intake": (
            f"QuestionnaireResponse?patient={p}&questionnaire={QUESTIONNAIRE_URL}&_sort=-authored&_count=1"
        ),
    }


PREFETCH: dict[str, str] = _prefetch()
REQUIRED_KEYS = ("patient",)
"""Without the Patient (age) no plan can be drafted: missing and not fetchable -> 412."""
_KEY_TYPES = {
    "conditions": ("Condition",),
    "medicationRequests": ("MedicationRequest",),
    "medicationStatements": ("MedicationStatement",),
    "observations": ("Observation",),
    "assessments": ("Observation",),
    "encounters": ("Encounter",),
}


def discovery() -> dict[str, Any]:
    return {
        "services": [
            {
                "hook": HOOK,
                "id": SERVICE_ID,
                "title": "carepath: draft opioid use disorder care pathway",
                "description": (
                    "Reads the chart (problem list, active medications, COWS, QTc, pregnancy, liver "
                    "tests, recent encounters; a carepath intake QuestionnaireResponse wins where "
                    "present) and, for patients with opioid use disorder or its treatment, drafts the "
                    "care pathway from cited rules: urgent and warning alerts, the plan with orders "
                    "to apply (naloxone, MOUD, referrals) and what is still to ask. A draft that "
                    "requires clinician review; no cards for other patients."
                ),
                "prefetch": dict(PREFETCH),
                "usageRequirements": (
                    "A signed JWT from an EHR on the service's issuer allow-list (CDS Hooks 2.0), aud = "
                    "this endpoint's URL. Without prefetch the service queries fhirServer only when "
                    "it is on its allow-list and fhirAuthorization is given; otherwise 412."
                ),
            }
        ]
    }


class HookRequestError(Exception):
    """A hook call that cannot be answered. ``status`` is the HTTP status; messages never quote input."""

    def __init__(
        self, status: int, message: str, problems: list[FieldProblem] | None = None, outcome: str = "invalid"
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = problems or []
        self.outcome = outcome


@dataclass(frozen=True)
class HookRequest:
    hook_instance: str
    patient_id: str
    encounter_id: str | None
    context: dict[str, Any]
    fhir_server: str | None
    access_token: str | None
    prefetch: dict[str, Any] | None
    """None: the EHR sent no prefetch (absent or null); a dict: the keys it sent."""


def _safe_id(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 64 and all(c.isalnum() or c in "-." for c in value)


def parse_hook_request(raw: bytes) -> HookRequest:
    """Raw request body -> the hook request (shape checked; no data read yet)."""
    if len(raw) > MAX_REQUEST_BYTES:
        raise HookRequestError(413, f"request is too large: at most {MAX_REQUEST_BYTES} bytes")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise HookRequestError(400, "request body is not valid JSON: expected a CDS Hooks request") from None
    if not isinstance(body, Mapping):
        raise HookRequestError(400, "request body must be a JSON object (a CDS Hooks request)")
    instance = body.get("hookInstance")
    if not isinstance(instance, str) or not instance.strip() or len(instance) > 100:
        raise HookRequestError(400, "hookInstance is required (a string of at most 100 characters)")
    if body.get("hook") != HOOK:
        raise HookRequestError(400, f"hook must be '{HOOK}' for this service")
    context = body.get("context")
    if not isinstance(context, Mapping) or not _safe_id(context.get("patientId")):
        raise HookRequestError(400, "context.patientId is required for patient-view (a FHIR id)")
    encounter = context.get("encounterId")
    auth = body.get("fhirAuthorization")
    server = body.get("fhirServer")
    if auth is not None and not isinstance(server, str):
        raise HookRequestError(400, "fhirServer is required when fhirAuthorization is given")
    token = None
    if isinstance(auth, Mapping):
        if auth.get("token_type") != "Bearer" or not isinstance(auth.get("access_token"), str):
            raise HookRequestError(400, "fhirAuthorization needs token_type 'Bearer' and an access_token")
        token = str(auth["access_token"])
    prefetch = body.get("prefetch")
    if prefetch is not None and not isinstance(prefetch, Mapping):
        raise HookRequestError(400, "prefetch must be a JSON object (or absent)")
    return HookRequest(
        hook_instance=instance,
        patient_id=str(context["patientId"]),
        encounter_id=str(encounter) if _safe_id(encounter) else None,
        context={k: v for k, v in context.items() if isinstance(v, str)},
        fhir_server=server if isinstance(server, str) else None,
        access_token=token,
        prefetch=dict(prefetch) if isinstance(prefetch, Mapping) else None,
    )


def prefetch_gaps(req: HookRequest) -> list[str]:
    """The prefetch keys the EHR did not send (a key sent as null is 'no data', not a gap)."""
    sent = req.prefetch or {}
    return [key for key in PREFETCH if key not in sent]


# ---------------------------------------------------------------- prefetch -> chart


def _references_patient(resource: Mapping[str, Any], patient_id: str) -> bool:
    for key in ("subject", "patient"):
        ref = resource.get(key)
        if isinstance(ref, Mapping) and isinstance(ref.get("reference"), str):
            target = ref["reference"].split("/_history/")[0]
            return target == f"Patient/{patient_id}" or target.endswith(f"/Patient/{patient_id}")
    return False


def _resources(value: Any, types: Sequence[str]) -> list[Mapping[str, Any]] | None:
    """A prefetch value -> its resources of ``types``; None if it is an OperationOutcome (not read)."""
    if not isinstance(value, Mapping):
        return []
    kind = value.get("resourceType")
    if kind == "OperationOutcome":
        return None
    if kind in types:
        return [value]
    if kind != "Bundle":
        raise HookRequestError(
            400, "a prefetch value is neither a Bundle nor the resource its template asks for"
        )
    out = []
    for entry in value.get("entry") or ():
        res = entry.get("resource") if isinstance(entry, Mapping) else None
        if isinstance(res, Mapping) and res.get("resourceType") in types:
            mode = (
                (entry.get("search") or {}).get("mode") if isinstance(entry.get("search"), Mapping) else None
            )
            if mode in (None, "match"):
                out.append(res)
    return out


def chart_from_prefetch(values: Mapping[str, Any], patient_id: str) -> tuple[Chart, Mapping[str, Any] | None]:
    """Prefetch values (keys missing = not available) -> the Chart and the newest carepath QR.

    Every resource must be about ``patient_id``: a Patient with another id, or a Condition,
    medication, Observation, Encounter or QuestionnaireResponse naming another patient, refuses
    the whole call (400): cards on the wrong chart are a safety defect.
    """
    patient = values.get("patient") if "patient" in values else None
    if isinstance(patient, Mapping) and patient.get("resourceType") == "Bundle":
        found = _resources(patient, ("Patient",)) or []
        patient = found[0] if found else None
    if isinstance(patient, Mapping):
        if patient.get("resourceType") == "OperationOutcome":
            patient = None
        elif patient.get("resourceType") != "Patient":
            raise HookRequestError(400, "prefetch 'patient' is not a Patient resource")
        elif patient.get("id") != patient_id:
            raise HookRequestError(
                400, "prefetch 'patient' is another patient than context.patientId", outcome="mismatch"
            )

    def group(*keys: str) -> list[Mapping[str, Any]] | None:
        present = [k for k in keys if k in values]
        if not present:
            return None
        out: list[Mapping[str, Any]] = []
        for key in present:
            found = _resources(values[key], _KEY_TYPES[key])
            if found is None:
                continue
            for res in found:
                if not _references_patient(res, patient_id):
                    raise HookRequestError(
                        400,
                        f"prefetch '{key}' holds data about another patient than context.patientId",
                        outcome="mismatch",
                    )
            out += found
        return out

    qr = questionnaire_response_from_bundle(values.get("intake"))
    if qr is not None and qr.get("subject") is not None and not _references_patient(qr, patient_id):
        raise HookRequestError(
            400, "prefetch 'intake' is about another patient than context.patientId", outcome="mismatch"
        )
    chart = Chart(
        patient=patient if isinstance(patient, Mapping) else None,
        conditions=group("conditions"),
        medications=group("medicationRequests", "medicationStatements"),
        observations=group("observations", "assessments"),
        encounters=group("encounters"),
    )
    return chart, qr


def intake_for(chart_intake: ChartIntake, qr: Mapping[str, Any] | None) -> tuple[Intake | None, set[str]]:
    """The intake to evaluate: the chart's, with the QuestionnaireResponse's answers winning.

    Returns (intake or None when the age is unknown, the fields dropped as contradictory). A
    chart value that makes the intake impossible (e.g. pregnant with sex at birth male from the
    questionnaire) is dropped and reported; a QuestionnaireResponse that is itself invalid is 422.
    """
    answers: dict[str, Any] | None = None
    if qr is not None:
        try:
            answers = intake_from_questionnaire_response(qr)
        except FhirInputError as exc:
            raise HookRequestError(
                400, "prefetch 'intake' is not a usable QuestionnaireResponse", exc.problems
            ) from None
        try:
            parse_intake_obj(
                merge_intakes(
                    answers,
                    {"assessment_date": chart_intake.intake["assessment_date"], "patient": {"age": 30}},
                )
            )
        except IntakeError as exc:
            qr_fields = set(_leaves(answers))
            bad = [p for p in exc.problems if p.field.split("[")[0] in qr_fields]
            if bad:
                raise HookRequestError(422, "prefetch 'intake' does not make a valid intake", bad) from None
    merged = merge_intakes(answers, chart_intake.intake)
    dropped: set[str] = set()
    for _ in range(3):
        if not isinstance(merged.get("patient"), Mapping) or "age" not in merged["patient"]:
            return None, dropped
        try:
            return parse_intake_obj(merged), dropped
        except IntakeError as exc:
            chart_fields = {p.field.split("[")[0] for p in exc.problems} - set(_leaves(answers or {}))
            if not chart_fields:
                raise HookRequestError(
                    422, "the intake read from the chart is not valid", exc.problems
                ) from None
            for path in chart_fields:
                _drop(merged, path)
            dropped |= chart_fields
    return None, dropped


def _leaves(d: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        out += _leaves(v, f"{prefix}{k}.") if isinstance(v, Mapping) else [f"{prefix}{k}"]
    return out


def _drop(d: dict[str, Any], path: str) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        d = d.get(part) or {}
    d.pop(leaf, None)


# ---------------------------------------------------------------- cards


@dataclass(frozen=True)
class CardContext:
    hook_instance: str
    patient_id: str
    encounter_id: str | None
    labels: Mapping[str, str]
    citation_shorts: Mapping[str, str]
    source_url: str
    app_url: str | None = None
    smart_url: str | None = None
    smart_context: str | None = None
    chart: ChartIntake | None = None
    dropped: frozenset[str] = frozenset()
    from_questionnaire: bool = False


@dataclass
class IssuedCard:
    card: dict[str, Any]
    kind: str
    code: str
    rule_ids: list[str] = field(default_factory=list)

    @property
    def suggestion_ids(self) -> list[str]:
        return [s["uuid"] for s in self.card.get("suggestions", ())]


def fit_summary(parts: Sequence[str], limit: int = SUMMARY_LIMIT) -> str:
    """Join whole parts with '; ' while under ``limit``; a part that does not fit is left out,
    never cut. The first part must fit on its own."""
    out = parts[0]
    if len(out) > limit:
        raise ValueError("the first part of a card summary must fit on its own")
    for part in parts[1:]:
        if part and len(out) + 2 + len(part) <= limit:
            out = f"{out}; {part}"
    return out


def _md(text: str) -> str:
    out = text
    for ch in "\\`*_[]<>#|":
        out = out.replace(ch, "\\" + ch)
    return out


def _cites(item: Item | Alert, shorts: Mapping[str, str]) -> str:
    out = []
    for c in item.citations[:2]:
        short = shorts.get(c.key, c.key)
        out.append(c.locator if short in c.locator else f"{short} {c.locator}")
    return ", ".join(out)


def _source(ctx: CardContext, plan: CarePlan | None, code: str) -> dict[str, Any]:
    version = f"{plan.ruleset.id} {plan.ruleset.version}" if plan else "carepath"
    return {
        "label": f"carepath OUD pathway ({version})",
        "url": ctx.source_url,
        "topic": {"system": CODE_SYSTEM, "code": code, "display": ctx.labels.get(code, code)},
    }


def _links(ctx: CardContext) -> list[dict[str, Any]]:
    links = []
    if ctx.app_url:
        links.append(
            {
                "label": "Review in carepath: intake pre-filled from the chart, full plan",
                "url": ctx.app_url,
                "type": "absolute",
            }
        )
    if ctx.smart_url:
        link: dict[str, Any] = {"label": "Open carepath (SMART app)", "url": ctx.smart_url, "type": "smart"}
        if ctx.smart_context:
            link["appContext"] = ctx.smart_context
        links.append(link)
    return links


def _override_reasons() -> list[dict[str, str]]:
    spec = outputs()["override_reasons"]
    return [{"system": spec["system"], "code": c["code"], "display": c["display"]} for c in spec["codes"]]


def _base_card(
    ctx: CardContext, plan: CarePlan | None, code: str, summary: str, indicator: str, detail: str
) -> dict[str, Any]:
    card: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "summary": summary,
        "indicator": indicator,
        "detail": detail,
        "source": _source(ctx, plan, code),
        "overrideReasons": _override_reasons(),
    }
    links = _links(ctx)
    if links:
        card["links"] = links
    return card


def _subject(ctx: CardContext) -> dict[str, str]:
    return {"reference": f"Patient/{ctx.patient_id}"}


def _encounter(ctx: CardContext) -> dict[str, str] | None:
    return {"reference": f"Encounter/{ctx.encounter_id}"} if ctx.encounter_id else None


def _reason(plan: CarePlan) -> dict[str, Any] | None:
    dx = plan.diagnosis
    spec = outputs()["diagnoses"].get(dx.icd10_cm) if dx and dx.icd10_cm else None
    if not spec or dx is None or dx.icd10_cm is None:
        return None
    return {
        "coding": [
            {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": dx.icd10_cm, "display": spec["display"]},
            {"system": "http://snomed.info/sct", "code": spec["snomed"], "display": spec["snomed_display"]},
        ]
    }


def _suggestion(ctx: CardContext, plan: CarePlan, item: Item, recommended: bool) -> dict[str, Any]:
    kwargs = {
        "subject": _subject(ctx),
        "instruction": item.text,
        "rule_ids": item.rule_ids,
        "reason": _reason(plan),
        "encounter": _encounter(ctx),
    }
    if item.code in medication_codes():
        resource = medication_proposal(item.code, ctx.labels, **kwargs)
        label = (
            "Order naloxone 4 mg nasal spray (2 devices)"
            if item.code == "hr.naloxone"
            else f"Propose {ctx.labels.get(item.code, item.code).lower()}"
        )
    else:
        resource = service_proposal(item.code, ctx.labels, **kwargs)
        label = f"Request: {ctx.labels.get(item.code, item.code)}"
    return {
        "label": label,
        "uuid": str(uuid.uuid4()),
        "isRecommended": recommended,
        "actions": [
            {"type": "create", "description": f"{label} (draft order for your review)", "resource": resource}
        ],
    }


def _naloxone_needed(ctx: CardContext) -> bool:
    return not (ctx.chart is not None and ctx.chart.has_naloxone)


def _actionable(plan: CarePlan, ctx: CardContext) -> list[Item]:
    """Items a card can turn into orders: recommended now, with a proposal kind, not already held."""
    items = {i.code: i for i in plan.items()}
    codes: list[str] = []
    decision = plan.medication_decision
    if decision is not None:
        codes += [o.code for o in decision.options if o.code and o.status == "recommend" and o.start == "now"]
    else:
        codes += [
            i.code
            for i in plan.items()
            if i.kind == "recommend" and i.code.startswith("moud.") and i.start == "now"
        ]
    if "hr.naloxone" in plan.codes("recommend") and _naloxone_needed(ctx):
        codes.append("hr.naloxone")
    if plan.level_of_care.code in service_codes():
        codes.append(plan.level_of_care.code)
    codes += [
        i.code
        for i in plan.items()
        if i.kind == "recommend" and i.code in service_codes() and i.start == "now"
    ]
    current = plan.medication_decision and [o.code for o in plan.medication_decision.options if o.current]
    return [items[c] for c in dict.fromkeys(codes) if c in items and c not in (current or [])]


_ALERT_ACTIONS = {
    "alert.high_overdose_risk": ("hr.naloxone",),
    "alert.qtc_prolonged": ("med.ecg",),
    "alert.suicide_risk": ("dd.urgent_psychiatric_evaluation",),
    "alert.pregnancy": ("med.obstetric_comanagement",),
}


def _alert_card(plan: CarePlan, alert: Alert, ctx: CardContext) -> IssuedCard:
    summary = outputs()["cards"]["alerts"].get(alert.code) or fit_summary(
        [ctx.labels.get(alert.code, alert.code) + ": open for details"]
    )
    detail = "\n".join(
        [
            _md(alert.text),
            "",
            f"Rules {_md(', '.join(alert.rule_ids))}; {_md(_cites(alert, ctx.citation_shorts))}.",
            "",
            f"_{_md(plan.draft_notice)}_",
        ]
    )
    card = _base_card(
        ctx, plan, alert.code, summary, "critical" if alert.severity == "urgent" else "warning", detail
    )
    items = {i.code: i for i in plan.items() if i.kind == "recommend"}
    wanted = [items[c] for c in _ALERT_ACTIONS.get(alert.code, ()) if c in items]
    wanted = [i for i in wanted if i.code != "hr.naloxone" or _naloxone_needed(ctx)]
    if wanted:
        card["suggestions"] = [_suggestion(ctx, plan, i, True) for i in wanted]
        card["selectionBehavior"] = "any"
    rules = list(alert.rule_ids) + [r for i in wanted for r in i.rule_ids]
    return IssuedCard(card, "alert", alert.code, sorted(set(rules)))


def _medication_line(plan: CarePlan, labels: Mapping[str, str]) -> str | None:
    decision = plan.medication_decision
    if decision is not None:
        rec = [o for o in decision.options if o.status in ("recommend", "continue")]
        rec.sort(key=lambda o: not o.preferred)
        if rec:
            o = rec[0]
            return f"{'continue' if o.status == 'continue' else 'start'} {o.label.lower()}"
        return "no medication recommended now" if decision.declined else None
    meds = [i for p in plan.phases if p.phase == "medication" for i in p.items if i.kind == "recommend"]
    if meds:
        label = labels.get(meds[0].code, meds[0].code)
        return (
            "continue current MOUD"
            if meds[0].code == "moud.continue_current"
            else f"{label.lower()} recommended"
        )
    return None


def _plan_detail(plan: CarePlan, ctx: CardContext) -> str:
    loc = plan.level_of_care
    lines = [f"**{_md(plan.draft_notice)}**", ""]
    if plan.diagnosis and plan.diagnosis.text:
        lines += [f"**Diagnosis:** {_md(plan.diagnosis.text)}", ""]
    lines += [
        f"**Level of care:** {_md(loc.label)} (ASAM {_md(loc.asam_level)}); "
        f"rules {_md(', '.join(loc.rule_ids))}",
        "",
    ]
    ranked = [i for i in plan.items() if i.kind in ("recommend", "consider") and i.code != loc.code]
    ranked.sort(key=lambda i: (i.step != "today", i.kind != "recommend"))
    lines.append("**To do:**")
    for item in ranked[:TOP_LINES]:
        when = f" ({_md(item.start_condition)})" if item.start != "now" and item.start_condition else ""
        lines.append(
            f"- {_md(item.text)}{when} ({_md(', '.join(item.rule_ids))}; "
            f"{_md(_cites(item, ctx.citation_shorts))})"
        )
    if len(ranked) > TOP_LINES:
        lines.append(f"- and {len(ranked) - TOP_LINES} more in the full plan")
    avoid = [i for i in plan.items() if i.kind == "avoid"]
    if avoid:
        lines += ["", "**Do not:** " + "; ".join(_md(ctx.labels.get(i.code, i.code)) for i in avoid)]
    if plan.next_visit is not None:
        lines += [
            "",
            f"**Next visit:** within {plan.next_visit.within_days} days ({_md(plan.next_visit.reason)})",
        ]
    lines += [
        "",
        f"Rule set {_md(plan.ruleset.id)} {_md(plan.ruleset.version)} (sha256 {plan.ruleset.sha256[:12]}), "
        f"assessment date {plan.assessment_date.isoformat()}.",
    ]
    return "\n".join(lines)


def _plan_card(plan: CarePlan, ctx: CardContext, elsewhere: set[str] | None = None) -> IssuedCard:
    loc = plan.level_of_care
    parts = [
        fit_summary([f"{outputs()['cards']['summary_prefix']}: {loc.label}"]),
        _medication_line(plan, ctx.labels) or "",
        "naloxone kit" if "hr.naloxone" in plan.codes("recommend") else "",
    ]
    summary = fit_summary(parts)
    card = _base_card(ctx, plan, loc.code, summary, "info", _plan_detail(plan, ctx))
    actionable = [i for i in _actionable(plan, ctx) if i.code not in (elsewhere or set())]
    if actionable:
        card["suggestions"] = [
            _suggestion(ctx, plan, i, i.code == "hr.naloxone" or i.code.startswith("moud."))
            for i in actionable
        ]
        card["selectionBehavior"] = "any"
    rules = set(loc.rule_ids) | {r for i in actionable for r in i.rule_ids}
    return IssuedCard(card, "summary", loc.code, sorted(rules))


def _read_lines(ctx: CardContext) -> list[str]:
    if ctx.chart is None:
        return []
    shown = [r for r in ctx.chart.readings if r.field not in ("assessment_date", "jurisdiction")]
    out = [f"- {_md(_label(r.field))}: {_md(_value(r.value))} ({_md(r.evidence)})" for r in shown]
    return out


def _label(path: str) -> str:
    from carepath.engine.labels import field_label

    return field_label(path)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v).replace("_", " ") for v in value) or "none"
    return str(value).replace("_", " ")


def _missing_detail(missing: Sequence[tuple[str, str, str]], ctx: CardContext) -> str:
    reasons = {u.field: u.reason for u in ctx.chart.unfilled} if ctx.chart else {}
    safety = [m for m in missing if m[2] == "safety"]
    other = [m for m in missing if m[2] != "safety"]
    lines = ["Answer these in carepath (the link opens the form pre-filled with what was read):", ""]
    if safety:
        lines.append("**Could change safety findings:**")
        lines += [
            f"- {_md(label)}" + (f": {_md(reasons[f])}" if f in reasons else "") for f, label, _ in safety
        ]
        lines.append("")
    if other:
        lines.append("**Could change the plan:** " + "; ".join(_md(label) for _, label, _ in other))
        lines.append("")
    read = _read_lines(ctx)
    if read:
        lines += ["**Read from the chart:**", *read, ""]
    if ctx.dropped:
        lines += [
            "**Not used (contradicts the carepath questionnaire):** "
            + ", ".join(_md(_label(f)) for f in sorted(ctx.dropped)),
            "",
        ]
    notes = ctx.chart.notes if ctx.chart else []
    if notes:
        lines += ["**Check:**", *[f"- {_md(n)}" for n in notes], ""]
    if ctx.from_questionnaire:
        lines.append("The clinician's carepath questionnaire was used where it answers a question.")
    return "\n".join(lines).strip()


def _missing_card(
    missing: Sequence[tuple[str, str, str]], ctx: CardContext, plan: CarePlan | None
) -> IssuedCard:
    n = len(missing)
    s = sum(1 for m in missing if m[2] == "safety")
    texts = outputs()["cards"]
    summary = texts["missing"].format(n=n, s=s) if s else texts["missing_no_safety"].format(n=n)
    card = _base_card(
        ctx, plan, "missing_information", summary, "warning" if s else "info", _missing_detail(missing, ctx)
    )
    card["source"]["topic"] = {
        "system": CODE_SYSTEM,
        "code": "missing_information",
        "display": "Missing information",
    }
    return IssuedCard(card, "missing", "missing_information", [])


def cards_for(plan: CarePlan, ctx: CardContext) -> list[IssuedCard]:
    """Alert cards (urgent first), the pathway card, then what is still missing."""
    alerts = sorted(
        (a for a in plan.alerts if a.severity in ("urgent", "warning")), key=lambda a: a.severity != "urgent"
    )
    cards = [_alert_card(plan, a, ctx) for a in alerts]
    on_alerts = {
        a["resource"].get("code", a["resource"].get("medicationCodeableConcept", {}))["coding"][-1]["code"]
        for c in cards
        for s in c.card.get("suggestions", ())
        for a in s["actions"]
    }
    cards.append(_plan_card(plan, ctx, on_alerts))  # an order is suggested on one card only
    missing = [(m.field, m.label, m.impact) for m in plan.missing_information]
    if missing:
        cards.append(_missing_card(missing, ctx, plan))
    return cards


def missing_card(ctx: CardContext) -> list[IssuedCard]:
    """When no plan can be drafted (no age in the chart or questionnaire): only what is missing."""
    unfilled = ctx.chart.unfilled if ctx.chart else []
    missing = [(u.field, u.label, "safety" if u.field == "patient.age" else "plan") for u in unfilled]
    return [_missing_card(missing, ctx, None)]


def response_body(cards: Sequence[IssuedCard]) -> dict[str, Any]:
    return {"cards": [c.card for c in cards]}
