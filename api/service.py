"""The service's use cases: create / re-evaluate / read / list plans, record overrides.

Routes (JSON API, web form, FHIR and CDS adapters) call these; each method checks the role
policy, does its reads and writes in ONE transaction together with its audit row, and raises
``api.errors`` exceptions for the caller to turn into responses. A refused or failed attempt
is audited too (committed before the error is raised).

Plans are immutable: a re-evaluation inserts version n+1 whose ``previous_id`` is version n
(a unique constraint keeps the history linear). ``Idempotency-Key`` (unique per user): the
same key with the same request returns the stored plan; with a different request, 409.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from carepath.api.audit import AuditEvent, AuditSink, record_event
from carepath.api.db import Database, DatabaseBusy, Tx, UniqueViolation
from carepath.api.decisions import carried_decisions, code_basis, recorded, signed_content_sha256
from carepath.api.errors import Conflict, EngineRefused, Forbidden, InvalidRequest, NotFound
from carepath.api.overload import ClientGone, client_gone
from carepath.api.policy import AUDITED, allowed
from carepath.api.records import (
    DECISION_ACTIONS,
    MISSING_SECTION,
    CommentRecord,
    NewComment,
    NewOverride,
    NewPlan,
    NewSignature,
    OverrideCount,
    OverrideRecord,
    PlanFilter,
    PlanRecord,
    PlanSummary,
    Principal,
    SignatureRecord,
    User,
    is_plan_id,
)
from carepath.engine import CarePlan, Engine, Intake, IntakeError, parse_intake_json, parse_intake_obj
from carepath.engine.errors import CarepathError, FieldProblem
from carepath.engine.intake import canonical_intake_json
from carepath.reports.record import Recorded

__all__ = [
    "Caller",
    "PlanService",
    "PlanView",
    "OverrideRequest",
    "SignRequest",
    "new_plan_id",
    "IDEMPOTENCY_KEY_MAX",
]

log = logging.getLogger("carepath.service")
T = TypeVar("T")
IDEMPOTENCY_KEY_MAX = 200


def new_plan_id() -> str:
    return "pl_" + secrets.token_urlsafe(16)


@dataclass(frozen=True)
class Caller:
    """Who is asking (an authenticated principal) and the request id for the audit trail."""

    principal: Principal
    request_id: str

    @property
    def user(self) -> User:
        return self.principal.user


@dataclass(frozen=True)
class PlanView:
    record: PlanRecord
    overrides: tuple[OverrideRecord, ...]
    signature: SignatureRecord | None = None
    comments: tuple[CommentRecord, ...] = ()
    previous: PlanView | None = None
    """The version this one re-evaluated (its plan and decisions), for the diff and the flags."""

    @property
    def plan(self) -> CarePlan:
        return self.record.plan()

    @property
    def signed(self) -> bool:
        return self.signature is not None

    @property
    def recorded(self) -> Recorded:
        """The version as recorded: decisions of record, sign-off, changes, flags (api.decisions)."""
        return recorded(self, self.previous)


@dataclass(frozen=True)
class OverrideRequest:
    code: str
    action: str  # "edit" | "override"
    reason: str
    section: str | None = None  # "item" | "alert" | "level_of_care" | "missing_information"
    phase: str | None = None
    replacement_text: str | None = None
    replacement_kind: str | None = None
    dose: str | None = None


@dataclass(frozen=True)
class SignRequest:
    name: str
    credentials: str = ""


class PlanService:
    def __init__(
        self,
        db: Database,
        engine: Engine,
        audit: AuditSink,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.db = db
        self.engine = engine
        self.audit = audit
        self.clock = clock or (lambda: datetime.now(UTC))

    # -- policy and audit ------------------------------------------------------------------

    def authorize(self, caller: Caller, action: str, plan_id: str | None = None) -> None:
        """Raise Forbidden (after auditing the refusal) if the caller's role may not do this."""
        if allowed(action, caller.user.role):
            return
        if action in AUDITED:
            self.record(caller, action, "denied", plan_id)
        raise Forbidden()

    def record(self, caller: Caller | None, action: str, outcome: str, plan_id: str | None = None) -> None:
        """A standalone audit row (group-committed, api.audit.record_event): reads, refusals."""
        if caller is None:
            raise ValueError("use record_anonymous for calls without a caller")
        user = caller.user
        event = AuditEvent(action, outcome, caller.request_id, user.id, user.org_id, plan_id)
        record_event(self.audit, self.db, event)

    def record_anonymous(
        self,
        request_id: str,
        action: str,
        outcome: str,
        plan_id: str | None = None,
        detail: str | None = None,
    ) -> None:
        record_event(
            self.audit, self.db, AuditEvent(action, outcome, request_id, plan_id=plan_id, detail=detail)
        )

    def _audit(self, tx: Tx, caller: Caller | None, action: str, outcome: str, plan_id: str | None) -> None:
        if caller is None:
            raise ValueError("use record_anonymous for calls without a caller")
        self.audit.append(
            tx,
            AuditEvent(
                action=action,
                outcome=outcome,
                request_id=caller.request_id,
                actor_id=caller.user.id,
                org_id=caller.user.org_id,
                plan_id=plan_id,
            ),
        )

    def _best_effort_error(self, caller: Caller, action: str, plan_id: str | None) -> None:
        try:
            self.record(caller, action, "error", plan_id)
        except Exception:  # the original failure is what the caller hears about
            log.warning("could not audit a failed %s (request %s)", action, caller.request_id)

    # -- plans -------------------------------------------------------------------------------

    def create(
        self,
        caller: Caller,
        intake: Intake | bytes | str | dict[str, Any],
        *,
        idempotency_key: str | None = None,
    ) -> tuple[PlanRecord, bool]:
        """Evaluate and store a new plan. Returns (record, replayed)."""
        return self._write(caller, "plan.create", intake, idempotency_key, previous=None)

    def reevaluate(
        self,
        caller: Caller,
        plan_id: str,
        intake: Intake | bytes | str | dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> tuple[PlanRecord, bool]:
        """A new version of ``plan_id`` from a corrected intake (or, without one, the stored
        intake under the current rule pack). Only the latest version can be re-evaluated."""
        action = "plan.reevaluate"
        self.authorize(caller, action, plan_id)
        previous = self._read_or_404(caller, action, plan_id, audit_ok=False)
        return self._write(caller, action, intake, idempotency_key, previous=previous)

    def _write(
        self,
        caller: Caller,
        action: str,
        raw: Intake | bytes | str | dict[str, Any] | None,
        idempotency_key: str | None,
        previous: PlanRecord | None,
    ) -> tuple[PlanRecord, bool]:
        prev_id = previous.id if previous else None
        self.authorize(caller, action, prev_id)
        try:
            _check_idempotency_key(idempotency_key)
            intake = previous.intake() if raw is None and previous else _parse(raw)
        except (IntakeError, InvalidRequest):
            self.record(caller, action, "invalid", prev_id)
            raise
        fingerprint = _fingerprint(intake, prev_id)
        now = self.clock().astimezone(UTC).replace(microsecond=0)
        self._abandon_if_client_gone(caller, action, prev_id)
        try:
            plan = self.engine.evaluate(intake, now)
        except CarepathError as exc:
            log.warning("engine refused an intake (%s, request %s)", type(exc).__name__, caller.request_id)
            self.record(caller, action, "refused", prev_id)
            raise EngineRefused() from None
        except Exception:
            self._best_effort_error(caller, action, prev_id)
            raise
        self._abandon_if_client_gone(caller, action, prev_id)
        try:
            return self._store(caller, action, intake, plan, fingerprint, idempotency_key, previous, now)
        except (Conflict, NotFound, InvalidRequest, Forbidden, DatabaseBusy):
            raise
        except Exception:
            self._best_effort_error(caller, action, prev_id)
            raise

    def _abandon_if_client_gone(self, caller: Caller, action: str, prev_id: str | None) -> None:
        """The client disconnected (api.overload): nobody will read the plan, so none is
        evaluated or stored; the attempt is audited as ``abandoned``."""
        if client_gone():
            self.record(caller, action, "abandoned", prev_id)
            raise ClientGone()

    def _store(
        self,
        caller: Caller,
        action: str,
        intake: Intake,
        plan: CarePlan,
        fingerprint: str,
        key: str | None,
        previous: PlanRecord | None,
        now: datetime,
    ) -> tuple[PlanRecord, bool]:
        prev_id = previous.id if previous else None
        for _attempt in range(3):  # a concurrent insert with the same key/version: look again
            error: Exception | None = None
            try:
                with self.db.transaction() as tx:
                    if key is not None:
                        existing = tx.plan_by_idempotency_key(caller.user.id, key)
                        if existing is not None:
                            if existing.request_sha256 == fingerprint:
                                self._audit(tx, caller, action, "replayed", existing.id)
                                return existing, True
                            self._audit(tx, caller, action, "conflict", prev_id)
                            error = Conflict(
                                "idempotency_key_reused",
                                "This Idempotency-Key was already used with a different request.",
                            )
                    if error is None and previous is not None:
                        latest = tx.get_plan(previous.id, caller.user.org_id)
                        if latest is not None and latest.next_id is not None:
                            self._audit(tx, caller, action, "conflict", prev_id)
                            error = Conflict(
                                "plan_superseded",
                                "This plan already has a newer version; re-evaluate the latest one.",
                                latest_id=latest.next_id,
                            )
                    if error is None:
                        new = self._new_plan(caller, intake, plan, fingerprint, key, previous, now)
                        tx.insert_plan(new)
                        if previous is not None:
                            self._carry_decisions(tx, caller, previous.id, new, now)
                        self._audit(tx, caller, action, "ok", new.id)
                        return PlanRecord.of_new(new, caller.user.email), False
            except UniqueViolation:
                continue
            assert error is not None
            raise error
        raise Conflict("concurrent_update", "The plan was changed concurrently; retry the request.")

    def _new_plan(
        self,
        caller: Caller,
        intake: Intake,
        plan: CarePlan,
        fingerprint: str,
        key: str | None,
        previous: PlanRecord | None,
        now: datetime,
    ) -> NewPlan:
        plan_id = new_plan_id()
        plan = plan.model_copy(update={"plan_id": plan_id})
        codes: set[tuple[str, str]] = {(i.code, i.kind) for i in plan.items()}
        codes |= {(a.code, "alert") for a in plan.alerts}
        codes.add((plan.level_of_care.code, "level"))
        return NewPlan(
            id=plan_id,
            version=previous.version + 1 if previous else 1,
            previous_id=previous.id if previous else None,
            root_id=previous.root_id if previous else plan_id,
            org_id=caller.user.org_id,
            author_id=caller.user.id,
            created_at=now,
            intake_json=canonical_intake_json(intake),
            intake_sha256=plan.intake_sha256,
            ruleset_id=plan.ruleset.id,
            ruleset_version=plan.ruleset.version,
            ruleset_sha256=plan.ruleset.sha256,
            plan_json=plan.model_dump_json(),
            level_of_care=plan.level_of_care.code,
            assessment_date=plan.assessment_date,
            jurisdiction=plan.jurisdiction,
            idempotency_key=key,
            request_sha256=fingerprint if key is not None else None,
            codes=tuple(sorted(codes)),
            patient_ref=intake.patient.id,
            patient_name=intake.patient.name,
        )

    def _carry_decisions(self, tx: Tx, caller: Caller, previous_id: str, new: NewPlan, now: datetime) -> None:
        """Decisions on unchanged lines follow the plan to its new version (``carried_from``);
        the others are flagged for review on the new version (``api.decisions``). Each carried
        decision is a stored override with its own audit row (its content MAC: api.audit)."""
        plan = CarePlan.model_validate_json(new.plan_json)
        for row in carried_decisions(tx.overrides_of(previous_id), plan):
            tx.insert_override(
                NewOverride(
                    plan_id=new.id,
                    org_id=new.org_id,
                    author_id=row.author_id,
                    created_at=now,
                    section=row.section,
                    code=row.code,
                    action=row.action,
                    reason=row.reason,
                    replacement_text=row.replacement_text,
                    replacement_kind=row.replacement_kind,
                    rule_ids=row.rule_ids,
                    dose=row.dose,
                    basis_sha256=row.basis_sha256,
                    carried_from=row.id,
                )
            )
            self._audit(tx, caller, "plan.override", "ok", new.id)

    def get(self, caller: Caller, plan_id: str, action: str = "plan.read") -> PlanView:
        """One plan of the caller's organisation with its overrides; audited as ``action``
        (``plan.read``, ``plan.report_html``, ``plan.report_pdf``, ``plan.fhir``...)."""
        self.authorize(caller, action, plan_id)
        found: PlanView | None = None
        with self.db.transaction(readonly=True) as tx:  # readers take no write lock...
            record = tx.get_plan(plan_id, caller.user.org_id) if is_plan_id(plan_id) else None
            if record is None:
                outcome = self._miss(tx, plan_id)
            else:
                found, outcome = self._view(tx, record, caller.user.org_id), "ok"
        self.record(caller, action, outcome, plan_id)  # ...and wait for their durable audit row
        if found is None:
            raise NotFound()
        return found

    @staticmethod
    def _view(tx: Tx, record: PlanRecord, org_id: int, *, with_previous: bool = True) -> PlanView:
        previous = None
        if with_previous and record.previous_id is not None:
            before = tx.get_plan(record.previous_id, org_id)
            if before is not None:
                previous = PlanService._view(tx, before, org_id, with_previous=False)
        return PlanView(
            record,
            tuple(tx.overrides_of(record.id)),
            tx.signature_of(record.id),
            tuple(tx.comments_of(record.id)),
            previous,
        )

    def _read_or_404(self, caller: Caller, action: str, plan_id: str, *, audit_ok: bool) -> PlanRecord:
        record = None
        with self.db.transaction() as tx:
            record = tx.get_plan(plan_id, caller.user.org_id) if is_plan_id(plan_id) else None
            if record is None:
                self._audit(tx, caller, action, self._miss(tx, plan_id), plan_id)
            elif audit_ok:
                self._audit(tx, caller, action, "ok", plan_id)
        if record is None:
            raise NotFound()
        return record

    @staticmethod
    def _miss(tx: Tx, plan_id: str) -> str:
        return "other_org" if is_plan_id(plan_id) and tx.plan_org(plan_id) is not None else "not_found"

    def list_plans(
        self, caller: Caller, flt: PlanFilter, *, limit: int = 20, cursor: str | None = None
    ) -> tuple[list[PlanSummary], str | None]:
        self.authorize(caller, "plan.list")
        try:
            with self.db.transaction() as tx:
                page = tx.list_plans(caller.user.org_id, flt, limit, cursor)
                self._audit(tx, caller, "plan.list", "ok", None)
        except ValueError:
            self.record(caller, "plan.list", "invalid")
            raise InvalidRequest(
                [FieldProblem("query.cursor", "is not a cursor returned by this API")]
            ) from None
        return page

    # -- overrides -----------------------------------------------------------------------------

    def add_override(self, caller: Caller, plan_id: str, req: OverrideRequest) -> OverrideRecord:
        """Record a decision (accept / modify / decline, or the older edit / override) on one line,
        or mark a missing-information row not applicable. Refused (409) once the version is
        signed or superseded: a change then makes a new version."""
        action = "plan.override"
        self.authorize(caller, action, plan_id)
        result: OverrideRecord | None = None
        error: Exception | None = None
        with self.db.transaction() as tx:
            record = self._open(tx, caller, action, plan_id, unsigned_latest=True)
            if isinstance(record, Exception):
                error = record
            else:
                plan = record.plan()
                target = _find_target(plan, req)
                if isinstance(target, FieldProblem):
                    self._audit(tx, caller, action, "invalid", plan_id)
                    error = InvalidRequest([target])
                else:
                    section, rule_ids = target
                    result = tx.insert_override(
                        NewOverride(
                            plan_id=plan_id,
                            org_id=caller.user.org_id,
                            author_id=caller.user.id,
                            created_at=self.clock().astimezone(UTC),
                            section=section,
                            code=req.code,
                            action=req.action,
                            reason=req.reason,
                            replacement_text=req.replacement_text,
                            replacement_kind=req.replacement_kind,
                            rule_ids=rule_ids,
                            dose=req.dose,
                            basis_sha256=code_basis(plan, req.code) if section != "alert" else None,
                        )
                    )
                    self._audit(tx, caller, action, "ok", plan_id)
        if error is not None:
            raise error
        assert result is not None
        return result

    def _open(
        self, tx: Tx, caller: Caller, action: str, plan_id: str, *, unsigned_latest: bool
    ) -> PlanRecord | Exception:
        """The plan to change, or the error to raise (audited): 404 for unknown ids and other
        organisations; with ``unsigned_latest``, 409 for a signed or superseded version."""
        record = tx.get_plan(plan_id, caller.user.org_id) if is_plan_id(plan_id) else None
        if record is None:
            self._audit(tx, caller, action, self._miss(tx, plan_id), plan_id)
            return NotFound()
        locked = _locked(tx, record) if unsigned_latest else None
        if locked is not None:
            self._audit(tx, caller, action, "conflict", plan_id)
            return locked
        return record

    # -- sign-off and review comments ---------------------------------------------------------

    def sign(self, caller: Caller, plan_id: str, req: SignRequest) -> PlanView:
        """A clinician signs this version: the plan, its decisions and the version are sealed by a
        hash; undecided lines count as accepted. The latest version only, and only once."""
        action = "plan.sign"
        self.authorize(caller, action, plan_id)
        found: PlanView | None = None
        error: Exception | None = None
        with self.db.transaction() as tx:
            record = self._open(tx, caller, action, plan_id, unsigned_latest=True)
            if isinstance(record, Exception):
                error = record
            else:
                content = signed_content_sha256(record, tx.overrides_of(plan_id))
                new = NewSignature(
                    plan_id=plan_id,
                    org_id=caller.user.org_id,
                    signer_id=caller.user.id,
                    signed_at=self.clock().astimezone(UTC).replace(microsecond=0),
                    signer_name=req.name,
                    credentials=req.credentials,
                    content_sha256=content,
                )
                try:
                    tx.insert_signature(new)
                except UniqueViolation:
                    self._audit(tx, caller, action, "conflict", plan_id)
                    error = Conflict("plan_signed", "This version is already signed.")
                else:
                    self._audit(tx, caller, action, "ok", plan_id)
                    found = self._view(tx, record, caller.user.org_id)
        if error is not None:
            raise error
        assert found is not None
        return found

    def comment(self, caller: Caller, plan_id: str, text: str, code: str | None = None) -> CommentRecord:
        """A review note on a plan version (clinicians and reviewers; signed versions too)."""
        action = "plan.comment"
        self.authorize(caller, action, plan_id)
        error: Exception | None = None
        created: CommentRecord | None = None
        with self.db.transaction() as tx:
            record = self._open(tx, caller, action, plan_id, unsigned_latest=False)
            if isinstance(record, Exception):
                error = record
            else:
                now = self.clock().astimezone(UTC)
                cid = tx.insert_comment(
                    NewComment(plan_id, caller.user.org_id, caller.user.id, now, text, code)
                )
                self._audit(tx, caller, action, "ok", plan_id)
                user = caller.user
                created = CommentRecord(cid, plan_id, user.id, user.email, user.role, now, text, code)
        if error is not None:
            raise error
        assert created is not None
        return created

    def override_summary(
        self, caller: Caller, since: datetime | None = None, before: datetime | None = None
    ) -> list[OverrideCount]:
        """Counts per rule id of the caller's organisation (no patient data, not audited)."""
        self.authorize(caller, "overrides.summary")
        with self.db.transaction(readonly=True) as tx:
            return tx.override_counts(caller.user.org_id, since, before)


def _parse(raw: Intake | bytes | str | dict[str, Any] | None) -> Intake:
    if isinstance(raw, Intake):
        return raw
    if raw is None:
        raise IntakeError([FieldProblem("(intake)", "is empty: expected a JSON object")])
    if isinstance(raw, dict):
        return parse_intake_obj(raw)
    return parse_intake_json(raw)


def _fingerprint(intake: Intake, previous_id: str | None) -> str:
    return hashlib.sha256(f"{previous_id or ''}\n{canonical_intake_json(intake)}".encode()).hexdigest()


def _check_idempotency_key(key: str | None) -> None:
    if key is None:
        return
    if not (0 < len(key) <= IDEMPOTENCY_KEY_MAX) or not all(33 <= ord(c) <= 126 for c in key):
        raise InvalidRequest(
            [
                FieldProblem(
                    "header.Idempotency-Key",
                    f"must be 1 to {IDEMPOTENCY_KEY_MAX} printable ASCII characters without spaces",
                )
            ]
        )


def _locked(tx: Tx, record: PlanRecord) -> Conflict | None:
    """A signed or superseded version takes no more decisions and no second signature."""
    if tx.signature_of(record.id) is not None:
        return Conflict(
            "plan_signed", "This version is signed and cannot change; amend it to make a new version."
        )
    if record.next_id is not None:
        return Conflict(
            "plan_superseded",
            "This plan already has a newer version; decide on the latest one.",
            latest_id=record.next_id,
        )
    return None


def _find_target(plan: CarePlan, req: OverrideRequest) -> tuple[str, tuple[str, ...]] | FieldProblem:
    """Which part of the plan the override is about, and the rules behind it."""
    if req.action == "not_applicable" or req.section == "missing_information":
        fields = {m.field for m in plan.missing_information}
        if req.action != "not_applicable" or req.code not in fields:
            return FieldProblem("body.code", "is not a missing-information field of this plan")
        return MISSING_SECTION, ()
    if req.action in DECISION_ACTIONS and req.section == "alert":
        return FieldProblem(
            "body.section", "alerts are acknowledged with a comment, not accepted or declined"
        )
    matches: list[tuple[str, Sequence[str]]] = []
    if req.section in (None, "item"):
        for phase in plan.phases:
            if req.phase is not None and phase.phase != req.phase:
                continue
            matches += [("item", i.rule_ids) for i in phase.items if i.code == req.code]
    if req.section in (None, "alert"):
        matches += [("alert", a.rule_ids) for a in plan.alerts if a.code == req.code]
    if req.section in (None, "level_of_care") and plan.level_of_care.code == req.code:
        matches.append(("level_of_care", plan.level_of_care.rule_ids))
    if not matches:
        return FieldProblem("body.code", "is not an item, alert or level of care of this plan")
    section = matches[0][0]
    rule_ids = sorted({r for s, ids in matches if s == section for r in ids})
    return section, tuple(rule_ids)
