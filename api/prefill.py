"""Form prefills: what a CDS call read from the chart, kept for the clinician's web form.

A card links to ``/?prefill=<token>``: the token is random (no patient data in the URL), only
its SHA-256 is stored, it works for signed-in users of the organisation whose EHR made the call,
and it expires after ``PREFILL_TTL``. Reading it is audited (``cds.prefill``).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from carepath.api.audit import AuditEvent
from carepath.api.intake_fields import form_values
from carepath.api.records import Prefill
from carepath.api.runtime import Runtime
from carepath.api.service import Caller

__all__ = ["PREFILL_TTL", "new_prefill", "prefilled_values", "token_hash"]

PREFILL_TTL = timedelta(hours=24)
EXPIRED = (
    "The intake pre-filled from the EHR has expired or is not yours: fill in the form, "
    "or open the card again."
)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_prefill(
    rt: Runtime, org_id: int, intake: Mapping[str, Any], readings: Sequence[Any], now: datetime, tx: Any
) -> str:
    """Store the prefill inside ``tx`` (the call's transaction) and return its token."""
    token = secrets.token_urlsafe(24)
    body = Prefill(
        org_id=org_id,
        intake_json=json.dumps(intake, sort_keys=True),
        readings_json=json.dumps([{"field": r.field, "evidence": r.evidence} for r in readings]),
        expires_at=now + PREFILL_TTL,
    )
    tx.insert_prefill(token_hash(token), body, now)
    return token


def prefilled_values(rt: Runtime, caller: Caller, token: str) -> tuple[dict[str, list[str]], list[str]]:
    """The form values for ``token`` (and no message), or nothing and a message; audited."""
    now = rt.clock()
    found = None
    with rt.db.transaction() as tx:
        if 10 <= len(token) <= 100:
            found = tx.prefill(token_hash(token), caller.user.org_id, now)
        outcome = "ok" if found else "not_found"
        rt.audit.append(
            tx, AuditEvent("cds.prefill", outcome, caller.request_id, caller.user.id, caller.user.org_id)
        )
    if found is None:
        return {}, [EXPIRED]
    return form_values(json.loads(found.intake_json)), []
