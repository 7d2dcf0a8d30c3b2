"""The create path's shortcuts must not change what a client sees: the record built from the
row just written equals the row read back, and the plan spliced from its stored JSON equals
the StoredPlan the API used to build by parsing and re-validating it."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

import pytest

from carepath.api.audit import ChainedAuditSink
from carepath.api.schemas import StoredPlan, fresh_stored_plan_json
from carepath.api.service import Caller, PlanService
from tests.factories import random_intake


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_new_plan_reads_back_and_serializes_as_before(database, users, engine, seed):
    from carepath.api.auth import principal_for_bearer

    clock = lambda: datetime(2026, 3, 2, 9, 30, 15, 123456, tzinfo=UTC)  # noqa: E731
    service = PlanService(database, engine, ChainedAuditSink(clock), clock)
    caller = Caller(principal_for_bearer(database, users.clinician.token), "req-fast-1")
    intake = random_intake(random.Random(seed))
    record, replayed = service.create(caller, json.dumps(intake), idempotency_key=f"k{seed}")
    assert not replayed
    with database.transaction(readonly=True) as tx:
        assert tx.get_plan(record.id, caller.user.org_id) == record
    assert json.loads(fresh_stored_plan_json(record)) == json.loads(StoredPlan.of(record).model_dump_json())
