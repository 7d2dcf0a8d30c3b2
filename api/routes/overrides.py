"""/v1/overrides/summary: which rules clinicians disagree with (counts, no patient data)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from carepath.api.deps import PlansDep, SummaryReader
from carepath.api.schemas import ErrorBody, OverrideRuleCount, OverrideSummary

router = APIRouter(tags=["overrides"])


@router.get(
    "/v1/overrides/summary",
    name="overrides.summary",
    response_model=OverrideSummary,
    summary="Overrides per rule id in your organisation (reviewers and admins)",
    responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}},
)
def overrides_summary(
    caller: SummaryReader,
    plans: PlansDep,
    created_from: Annotated[date | None, Query(description="Overrides recorded on or after (UTC).")] = None,
    created_to: Annotated[date | None, Query(description="Overrides recorded on or before (UTC).")] = None,
) -> OverrideSummary:
    since = datetime.combine(created_from, time(0), tzinfo=UTC) if created_from else None
    before = datetime.combine(created_to + timedelta(days=1), time(0), tzinfo=UTC) if created_to else None
    counts = plans.override_summary(caller, since, before)
    return OverrideSummary(
        organisation=caller.user.org_slug,
        since=since,
        before=before,
        total_overrides=sum(c.overrides for c in counts) if counts else 0,
        rules=[OverrideRuleCount.of(c) for c in counts],
    )
