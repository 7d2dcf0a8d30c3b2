"""42 CFR Part 2: consent records and the accounting of disclosures, per patient.

A patient is the intake's ``patient.id`` (the clinic's own identifier). It is never stored in
clear and never put in a URL: requests carry it in the JSON body, and the service keeps a keyed
hash of it (api.vault.Vault.patient_key) beside each plan, consent and disclosure.

    POST /v1/consents                     record a written consent {patient_id, recipient,
                                          purpose, scope, expires_on?}            (clinician)
    POST /v1/consents/search              a patient's consents {patient_id}  (clinician, reviewer)
    POST /v1/consents/{consent_id}/revoke revoke one                               (clinician)
    POST /v1/disclosures                  record a disclosure made outside carepath {plan_id,
                                          recipient, purpose, consent_id?}          (clinician)
    POST /v1/accounting                   the accounting of disclosures of a patient's plans
                                          {patient_id}; JSON, or CSV with Accept: text/csv

The accounting lists every time a plan of the patient left carepath: recorded disclosures
(who received which plan, when, why, under which consent) and, from the audit trail, every
FHIR bundle, PDF and HTML report of those plans served, with who fetched it and when. Every
call is audited.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from carepath.api.audit import AuditEvent, record_event
from carepath.api.deps import RawBody, RuntimeDep, allow
from carepath.api.errors import InvalidRequest, NotFound
from carepath.api.records import is_plan_id
from carepath.api.runtime import Runtime
from carepath.api.service import Caller
from carepath.engine.errors import FieldProblem, problems_from_validation

router = APIRouter(tags=["part2"])

ConsentWriter = Annotated[Caller, Depends(allow("consent.write"))]
ConsentReader = Annotated[Caller, Depends(allow("consent.read"))]
DisclosureWriter = Annotated[Caller, Depends(allow("disclosure.write"))]
AccountingReader = Annotated[Caller, Depends(allow("accounting.read"))]

EXPORT_ACTIONS = {
    "plan.fhir": "FHIR CarePlan bundle",
    "plan.report_pdf": "PDF report",
    "plan.report_html": "HTML report",
}
Text200 = Annotated[str, Field(min_length=1, max_length=200)]
PatientId = Annotated[str, Field(min_length=1, max_length=200, description="The intake's patient.id")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConsentIn(_In):
    patient_id: PatientId
    recipient: Text200
    purpose: Annotated[str, Field(min_length=1, max_length=100)]
    scope: Text200 = "care plan drafts"
    expires_on: date | None = None


class PatientIn(_In):
    patient_id: PatientId


class DisclosureIn(_In):
    plan_id: Annotated[str, Field(pattern=r"^pl_[A-Za-z0-9_-]{22}$")]
    recipient: Text200
    purpose: Annotated[str, Field(min_length=1, max_length=100)]
    consent_id: int | None = None


class ConsentOut(BaseModel):
    consent_id: int
    recipient: str
    purpose: str
    scope: str
    expires_on: date | None
    recorded_by: str
    recorded_at: datetime
    revoked_at: datetime | None
    active: bool


class Disclosure(BaseModel):
    at: datetime | str
    plan_id: str
    what: str
    recipient: str
    purpose: str
    consent_id: int | None = None
    recorded_by: str | None = None
    source: str = Field(description="recorded (a clinician recorded it) | audit (carepath served it)")


def _parse(model: type[_In], body: bytes) -> Any:
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as exc:
        problems = [
            FieldProblem("body" if p.field == "(intake)" else f"body.{p.field}", p.message)
            for p in problems_from_validation(exc)
        ]
        raise InvalidRequest(problems) from None


def _audit(
    rt: Runtime,
    caller: Caller,
    action: str,
    outcome: str,
    plan_id: str | None = None,
    detail: str | None = None,
) -> None:
    u = caller.user
    record_event(
        rt.audit, rt.db, AuditEvent(action, outcome, caller.request_id, u.id, u.org_id, plan_id, None, detail)
    )


def _patient_key(rt: Runtime, org_id: int, patient_id: str) -> str:
    return rt.db.tx_factory.vault.patient_key(org_id, patient_id)  # type: ignore[attr-defined, no-any-return]


def _consent_out(row: dict[str, Any], emails: dict[int, str], today: date) -> ConsentOut:
    active = row["revoked_at"] is None and (row["expires_on"] is None or row["expires_on"] >= today)
    return ConsentOut(
        consent_id=row["id"],
        recipient=row["recipient"],
        purpose=row["purpose"],
        scope=row["scope"],
        expires_on=row["expires_on"],
        recorded_by=emails.get(row["recorded_by"], str(row["recorded_by"])),
        recorded_at=row["recorded_at"],
        revoked_at=row["revoked_at"],
        active=active,
    )


@router.post("/v1/consents", name="consent.write", status_code=201, response_model=ConsentOut)
def add_consent(caller: ConsentWriter, rt: RuntimeDep, body: RawBody) -> ConsentOut:
    data = _parse(ConsentIn, body)
    now = rt.clock()
    with rt.db.transaction() as tx:
        cid = tx.add_consent(
            {
                "org_id": caller.user.org_id,
                "patient_key": _patient_key(rt, caller.user.org_id, data.patient_id),
                "recipient": data.recipient,
                "purpose": data.purpose,
                "scope": data.scope,
                "expires_on": data.expires_on,
                "recorded_by": caller.user.id,
                "recorded_at": now,
            }
        )
        row = tx.consent(cid, caller.user.org_id)
    _audit(rt, caller, "consent.write", "ok", detail=f"consent_id={cid}")
    assert row is not None
    return _consent_out(row, {caller.user.id: caller.user.email}, now.date())


@router.post("/v1/consents/search", name="consent.read", response_model=list[ConsentOut])
def search_consents(caller: ConsentReader, rt: RuntimeDep, body: RawBody) -> list[ConsentOut]:
    data = _parse(PatientIn, body)
    with rt.db.transaction(readonly=True) as tx:
        rows = tx.consents_of(caller.user.org_id, _patient_key(rt, caller.user.org_id, data.patient_id))
        emails = tx.user_emails({r["recorded_by"] for r in rows})
    _audit(rt, caller, "consent.read", "ok", detail=f"found={len(rows)}")
    return [_consent_out(r, emails, rt.clock().date()) for r in rows]


@router.post("/v1/consents/{consent_id}/revoke", name="consent.revoke", response_model=ConsentOut)
def revoke_consent(consent_id: int, caller: ConsentWriter, rt: RuntimeDep) -> ConsentOut:
    now = rt.clock()
    with rt.db.transaction() as tx:
        n = tx.revoke_consent(consent_id, caller.user.org_id, caller.user.id, now)
        row = tx.consent(consent_id, caller.user.org_id)
        emails = tx.user_emails({row["recorded_by"]}) if row else {}
    _audit(rt, caller, "consent.write", "ok" if n else "not_found", detail=f"revoke consent_id={consent_id}")
    if not n or row is None:
        raise NotFound("No such active consent in your organisation.")
    return _consent_out(row, emails, now.date())


@router.post("/v1/disclosures", name="disclosure.write", status_code=201, response_model=Disclosure)
def add_disclosure(caller: DisclosureWriter, rt: RuntimeDep, body: RawBody) -> Disclosure:
    data = _parse(DisclosureIn, body)
    now = rt.clock()
    org = caller.user.org_id
    problem: FieldProblem | None = None
    with rt.db.transaction() as tx:
        subject = tx.patient_of_plan(data.plan_id) if is_plan_id(data.plan_id) else None
        if tx.get_plan(data.plan_id, org) is None:
            subject = None
            problem = FieldProblem("body.plan_id", "is not a plan of your organisation")
        elif subject is None:
            problem = FieldProblem("body.plan_id", "is a plan whose intake has no patient.id")
        elif data.consent_id is not None and tx.consent(data.consent_id, org) is None:
            problem = FieldProblem("body.consent_id", "is not a consent of your organisation")
        else:
            tx.add_disclosure(
                {
                    "org_id": org,
                    "patient_key": subject[1],
                    "plan_id": data.plan_id,
                    "at": now,
                    "recipient": data.recipient,
                    "purpose": data.purpose,
                    "consent_id": data.consent_id,
                    "recorded_by": caller.user.id,
                }
            )
    _audit(rt, caller, "disclosure.write", "invalid" if problem else "ok", data.plan_id)
    if problem is not None:
        raise InvalidRequest([problem])
    return Disclosure(
        at=now,
        plan_id=data.plan_id,
        what="care plan draft",
        recipient=data.recipient,
        purpose=data.purpose,
        consent_id=data.consent_id,
        recorded_by=caller.user.email,
        source="recorded",
    )


@router.post("/v1/accounting", name="accounting.read", response_model=list[Disclosure])
def accounting(caller: AccountingReader, rt: RuntimeDep, body: RawBody, request: Request) -> Any:
    data = _parse(PatientIn, body)
    org = caller.user.org_id
    key = _patient_key(rt, org, data.patient_id)
    with rt.db.transaction(readonly=True) as tx:
        plan_ids = tx.plans_of_patient(org, key)
        recorded = tx.disclosures_of(org, key)
        served = tx.audit_rows_of_plans(plan_ids, tuple(EXPORT_ACTIONS))
        emails = tx.user_emails(
            {r["recorded_by"] for r in recorded} | {e.actor_id for e in served if e.actor_id}
        )
    rows = [
        Disclosure(
            at=r["at"],
            plan_id=r["plan_id"],
            what="care plan draft",
            recipient=r["recipient"],
            purpose=r["purpose"],
            consent_id=r["consent_id"],
            recorded_by=emails.get(r["recorded_by"]),
            source="recorded",
        )
        for r in recorded
    ]
    rows += [
        Disclosure(
            at=e.at,
            plan_id=e.plan_id or "",
            what=EXPORT_ACTIONS[e.action],
            recipient=emails.get(e.actor_id or 0, "unknown user"),
            purpose="treatment (served by carepath to a signed-in user)",
            source="audit",
        )
        for e in served
        if e.outcome == "ok"
    ]
    rows.sort(key=lambda d: str(d.at))
    _audit(rt, caller, "accounting.read", "ok", detail=f"entries={len(rows)}")
    if "text/csv" in request.headers.get("accept", ""):
        out = io.StringIO()
        writer = csv.writer(out)
        fields = list(Disclosure.model_fields)
        writer.writerow(fields)
        for d in rows:
            writer.writerow([_csv_cell(getattr(d, f)) for f in fields])
        return Response(out.getvalue(), media_type="text/csv")
    return rows


def _csv_cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text  # no formula injection
