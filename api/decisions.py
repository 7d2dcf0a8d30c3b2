"""Decisions of record: what the clinician decided about each line of a stored plan version.

A decision is an ``overrides`` row (append-only): accept, modify (new text and/or dose) or
decline with a reason; ``edit``/``override`` rows from before are read as modify/decline. The
latest row for a code is the decision of record. On a signed version an undecided line counts
as accepted at signing.

Public helpers (FHIR, CDS and reports use these, never the rows):

    recorded(view, previous=None)   -> reports.record.Recorded    (decisions, sign-off, flags, diff)
    decisions_of(view)              -> {code: Decision}            (the decision of record per code)
    activity_status(decision)       -> FHIR R4 CarePlan.activity.detail.status
    item_basis(item)                -> sha256 of what a decision was made on
    signed_content_sha256(view)     -> the hash a signature seals
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from carepath.api.records import MISSING_SECTION, CommentRecord, OverrideRecord, PlanRecord, SignatureRecord
from carepath.engine import CarePlan
from carepath.engine.labels import field_label
from carepath.engine.plan import Item
from carepath.reports.record import Change, Comment, Decision, Recorded, ReviewFlag, Signature

if TYPE_CHECKING:
    from carepath.api.service import PlanView

__all__ = [
    "FHIR_ACTIVITY_STATUS",
    "activity_status",
    "activity_status_of_action",
    "carried_decisions",
    "code_basis",
    "decisions_of",
    "describe",
    "item_basis",
    "latest_decisions",
    "recorded",
    "signed_content_sha256",
    "verify_signature",
]

_STATUS = {
    "accept": "accepted",
    "modify": "modified",
    "edit": "modified",
    "decline": "declined",
}
FHIR_ACTIVITY_STATUS = {
    None: "not-started",  # a suggestion nobody has decided on yet (draft plan)
    "accepted": "scheduled",
    "modified": "scheduled",  # with the clinician's text/dose as the activity description
    "declined": "cancelled",  # with the reason as statusReason
}
"""FHIR R4 ``CarePlan.activity.detail.status`` for each decision (``CarePlan.status``: draft while
unsigned, active once signed)."""


def activity_status(decision: Decision | None) -> str:
    return FHIR_ACTIVITY_STATUS[decision.status if decision else None]


def activity_status_of_action(action: str | None) -> str:
    """The same for an override's action word (accept / modify / edit / decline); anything else
    is undecided."""
    return FHIR_ACTIVITY_STATUS[_STATUS.get(action or "")]


def item_basis(item: Item) -> str:
    """What a decision on ``item`` was made on: kind, wording, timing, cautions and the intake
    facts behind it. A re-evaluation carries the decision over only while this is unchanged."""
    return _sha256(_basis(item))


def code_basis(plan: CarePlan, code: str) -> str | None:
    """The basis of the plan's line for ``code`` (a plan from before Plan v2 may list a code
    twice: both items count); None when no item carries the code."""
    items = [_basis(i) for i in plan.items() if i.code == code]
    if not items:
        return None
    return _sha256(items[0]) if len(items) == 1 else _sha256(items)


def _basis(item: Item) -> dict[str, Any]:
    return {
        "code": item.code,
        "kind": item.kind,
        "text": item.text,
        "start": item.start,
        "start_condition": item.start_condition,
        "cautions": [c.text for c in item.cautions],
        "triggered_by": item.triggered_by,
    }


def _sha256(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def _decision(row: OverrideRecord) -> Decision | None:
    status = _STATUS.get(row.action)
    if row.action == "override":
        status = "declined" if row.replacement_kind in ("remove", "avoid") else "modified"
    if status is None:
        return None
    kind = row.replacement_kind if row.replacement_kind not in (None, "remove") else None
    return Decision(
        code=row.code,
        status=status,  # type: ignore[arg-type]
        reason=row.reason,
        by=row.author_email or f"user {row.author_id}",
        at=row.created_at,
        text=row.replacement_text,
        dose=row.dose,
        kind=kind,
        carried=row.carried_from is not None,
    )


def latest_decisions(rows: Iterable[OverrideRecord]) -> dict[str, OverrideRecord]:
    """The latest decision row per code (rows come in insertion order)."""
    found: dict[str, OverrideRecord] = {}
    for row in rows:
        if row.section != MISSING_SECTION and _decision(row) is not None:
            found[row.code] = row
    return found


def _not_applicable(rows: Iterable[OverrideRecord]) -> dict[str, OverrideRecord]:
    return {r.code: r for r in rows if r.section == MISSING_SECTION and r.action == "not_applicable"}


def decisions_of(view: PlanView) -> dict[str, Decision]:
    """{code: decision of record} for a stored plan version (for FHIR and CDS). On a signed
    version every line without an explicit decision is accepted at signing."""
    rec = recorded(view)
    codes = {i.code for i in view.plan.items()} | {a.code for a in view.plan.alerts}
    codes.add(view.plan.level_of_care.code)
    out = {}
    for code in sorted(codes):
        decision = rec.decision(code)
        if decision is not None:
            out[code] = decision
    return out


def _signature(sig: SignatureRecord | None) -> Signature | None:
    if sig is None:
        return None
    return Signature(sig.signer_email, sig.signer_name, sig.credentials, sig.signed_at, sig.content_sha256)


def recorded(view: PlanView, previous: PlanView | None = None) -> Recorded:
    """The version as recorded; with ``previous``, also what changed and which earlier decisions
    were not carried over (their line's basis changed or the line is gone)."""
    rows = view.overrides
    decisions = {code: d for code, row in latest_decisions(rows).items() if (d := _decision(row))}
    marked = {
        f: Decision(f, "accepted", r.reason, r.author_email or "", r.created_at)
        for f, r in _not_applicable(rows).items()
    }
    flags: tuple[ReviewFlag, ...] = ()
    changes: tuple[Change, ...] = ()
    if previous is not None:
        flags = tuple(_flags(view, previous, decisions))
        changes = tuple(_changes(view, previous))
    return Recorded(
        plan_id=view.record.id,
        version=view.record.version,
        author=view.record.author_email,
        created_at=view.record.created_at,
        decisions=decisions,
        not_applicable=marked,
        signature=_signature(view.signature),
        flags=flags,
        changes=changes,
        previous_version=previous.record.version if previous else None,
        comments=tuple(_comment(c) for c in view.comments),
    )


def _comment(c: CommentRecord) -> Comment:
    return Comment(c.author_email, c.author_role, c.created_at, c.text, c.code)


def describe(decision: Decision) -> str:
    """A decision in words, e.g. "declined: patient on methadone elsewhere"."""
    parts = [decision.status]
    if decision.text:
        parts.append(f'"{decision.text}"')
    if decision.dose:
        parts.append(f"dose {decision.dose}")
    words = " ".join(parts)
    return f"{words}: {decision.reason}" if decision.reason else words


def _flags(view: PlanView, previous: PlanView, decided: Mapping[str, Decision]) -> list[ReviewFlag]:
    items = {i.code: i for i in view.plan.items()}
    out = []
    for code, row in latest_decisions(previous.overrides).items():
        if code in decided:
            continue
        before = _decision(row)
        assert before is not None
        why = (
            "basis_changed" if code in items or code == view.plan.level_of_care.code else "no_longer_in_plan"
        )
        out.append(ReviewFlag(code, describe(before), why))  # type: ignore[arg-type]
    return out


def _changes(view: PlanView, previous: PlanView) -> list[Change]:
    now, before = _lines(view.plan), _lines(previous.plan)
    out = [Change("added", c, f"{c}: {now[c]}") for c in now if c not in before]
    out += [Change("removed", c, f"{c}: {before[c]}") for c in before if c not in now]
    out += [Change("changed", c, f"{c}: {now[c]}") for c in now if c in before and now[c] != before[c]]
    old = {c: _decision(r) for c, r in latest_decisions(previous.overrides).items()}
    for code, row in latest_decisions(view.overrides).items():
        if row.carried_from is None and (d := _decision(row)) is not None:
            was = old.get(code)
            out.append(
                Change("decision", code, f"{code}: {describe(d)}" + (f" (was {was.status})" if was else ""))
            )
    out += [
        Change("intake", f, f"{field_label(f)} corrected") for f in _intake_diff(view.record, previous.record)
    ]
    return out


def _lines(plan: CarePlan) -> dict[str, str]:
    lines = {i.code: f"{i.kind}: {i.text}" for i in plan.items()}
    lines[plan.level_of_care.code] = f"level of care: {plan.level_of_care.label}"
    lines |= {a.code: f"alert: {a.text}" for a in plan.alerts}
    return lines


def _intake_diff(now: PlanRecord, before: PlanRecord) -> list[str]:
    """Intake fields whose answer changed (names only: the values stay in the record)."""
    a, b = _flat(json.loads(now.intake_json)), _flat(json.loads(before.intake_json))
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def _flat(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[prefix + key] = value
    return out


def signed_content_sha256(record: PlanRecord, rows: Sequence[OverrideRecord]) -> str:
    """The hash a signature seals: the plan as stored, its intake hash, the version and every
    decision of record (code, status, text, dose, reason, who). Recomputed to verify a signature."""
    decisions = []
    for code, row in sorted(latest_decisions(rows).items()):
        d = _decision(row)
        assert d is not None
        decisions.append([code, d.status, d.text, d.dose, d.kind, d.reason, d.by])
    marked = sorted([f, r.reason] for f, r in _not_applicable(rows).items())
    content = {
        "plan_id": record.id,
        "version": record.version,
        "plan": json.loads(record.plan_json),
        "intake_sha256": record.intake_sha256,
        "decisions": decisions,
        "not_applicable": marked,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def verify_signature(view: PlanView) -> bool:
    """The stored version and its decisions still hash to what was signed."""
    sig = view.signature
    return sig is not None and signed_content_sha256(view.record, view.overrides) == sig.content_sha256


def carried_decisions(previous: Sequence[OverrideRecord], plan: CarePlan) -> list[OverrideRecord]:
    """Decisions on the previous version whose line is unchanged in ``plan`` (same basis), and
    "not applicable" marks for missing-information rows the new plan still lists."""
    out = [
        row
        for code, row in latest_decisions(previous).items()
        if row.basis_sha256 is not None and row.basis_sha256 == code_basis(plan, code)
    ]
    still_missing = {m.field for m in plan.missing_information}
    out += [row for f, row in _not_applicable(previous).items() if f in still_missing]
    return sorted(out, key=lambda r: r.id)
