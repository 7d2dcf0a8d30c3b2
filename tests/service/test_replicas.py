"""Replicas: two `carepath serve` processes on one PostgreSQL database, under concurrent load.

Everything a request needs lives in the database, so either replica can serve any request:
sessions (a login on one is valid on the other, CSRF included, with a shared secret key),
idempotency (one key sent to both replicas at once makes one plan; the other answer is the
replay), the audit chain (appends from both interleave into one unbroken chain).
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import _pg_url_or_skip
from tests.service.helpers import PASSWORD, ProcessServer, make_users, pg_database

CREATES = 60  # unique plans, spread over both replicas
DUPLICATES = 20  # keys sent to both replicas at the same moment
THREADS = 8


@pytest.fixture
def replicas(tmp_path: Path):
    from carepath.api.hardening import open_database
    from carepath.api.keys import new_data_key_line
    from carepath.api.settings import Settings

    with pg_database(_pg_url_or_skip()) as url:
        env = {
            "CAREPATH_DATABASE_URL": url,
            "CAREPATH_SECRET_KEY": secrets.token_hex(32),  # shared, as in deploy/compose.yaml
            "CAREPATH_DATA_KEYS": new_data_key_line("k1"),  # one encryption key for every replica
            "CAREPATH_AUDIT_KEY": secrets.token_hex(32),  # one keyed audit chain
            "CAREPATH_MAX_QUEUE": "64",  # this test checks correctness, not shedding
            "CAREPATH_QUEUE_TIMEOUT_S": "60",
        }
        a = ProcessServer(tmp_path / "a" / "data", env=env, log_dir=tmp_path / "a")
        b = ProcessServer(tmp_path / "b" / "data", env=env, log_dir=tmp_path / "b")
        with a, b:
            # opened as a replica opens it (the shared keys): verify_chain checks the keyed chain
            # and the plans' content MACs over what they decrypt to
            db = open_database(
                Settings(
                    data_dir=tmp_path / "verify",
                    database_url=url,
                    data_keys=env["CAREPATH_DATA_KEYS"],
                    audit_key=env["CAREPATH_AUDIT_KEY"],
                )
            )
            try:
                yield a, b, db, make_users(db)
            finally:
                db.dispose()


def _errors(responses: list[tuple[str, httpx.Response]]) -> list[str]:
    return sorted({f"{r.status_code} {r.text[:120]}" for _, r in responses if r.status_code != 201})


def test_two_replicas_share_idempotency_sessions_and_one_audit_chain(replicas, example_intake):
    from carepath.api.audit import verify_chain

    a, b, db, users = replicas
    alice = users.clinician
    servers = itertools.cycle([a, b])
    body = json.dumps(example_intake)
    local = threading.local()

    def client(url: str) -> httpx.Client:
        clients = local.__dict__.setdefault("clients", {})
        if url not in clients:
            clients[url] = httpx.Client(base_url=url, timeout=60, headers=alice.headers)
        return clients[url]

    def create(url: str, key: str) -> httpx.Response:
        return client(url).post("/v1/plans", content=body, headers={"Idempotency-Key": key})

    jobs = [(next(servers).url, f"unique-{n}") for n in range(CREATES)]
    for n in range(DUPLICATES):  # the same key at both replicas, side by side in the queue
        jobs += [(a.url, f"twice-{n}"), (b.url, f"twice-{n}")]
    other = {a.url: b.url, b.url: a.url}
    with ThreadPoolExecutor(THREADS) as pool:
        responses = list(pool.map(lambda job: (job[1], create(*job)), jobs))
        statuses = Counter(r.status_code for _, r in responses)
        assert statuses == Counter({201: CREATES + 2 * DUPLICATES}), (statuses, _errors(responses))
        # every new plan read back from the OTHER replica than the one that made it, under load
        made = {r.json()["plan_id"]: other[url] for (url, _), (_, r) in zip(jobs, responses, strict=True)}
        reads = list(pool.map(lambda plan: client(made[plan]).get(f"/v1/plans/{plan}"), made))

    assert all(r.status_code == 200 for r in reads)
    by_key: dict[str, list[httpx.Response]] = {}
    for key, r in responses:
        by_key.setdefault(key, []).append(r)
    for n in range(DUPLICATES):
        pair = by_key[f"twice-{n}"]
        assert len({r.json()["plan_id"] for r in pair}) == 1  # one plan for the key
        assert sorted(r.headers.get("idempotent-replayed", "no") for r in pair) == ["no", "true"]

    with db.transaction(readonly=True) as tx:
        assert tx.count_plans() == CREATES + DUPLICATES
        entries = list(tx.audit_entries())
    outcomes = Counter((e.action, e.outcome) for e in entries)
    assert outcomes[("plan.create", "ok")] == CREATES + DUPLICATES
    assert outcomes[("plan.create", "replayed")] == DUPLICATES
    assert outcomes[("plan.read", "ok")] == len(made)
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    result = verify_chain(db)
    assert result.ok, result

    # a browser session made on replica A is good on replica B (cookie and CSRF token)
    with httpx.Client(base_url=a.url, timeout=60) as on_a:
        page = on_a.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        assert (
            on_a.post("/login", data={"email": alice.email, "password": PASSWORD, "csrf_token": token})
        ).status_code == 303
        cookie = on_a.cookies.get("carepath_session")
    with httpx.Client(base_url=b.url, timeout=60, cookies={"carepath_session": cookie}) as on_b:
        me = on_b.get("/session").json()
        assert me["email"] == alice.email and me["via"] == "session"
        with httpx.Client(base_url=a.url, timeout=60, cookies={"carepath_session": cookie}) as back_on_a:
            made_on_a = back_on_a.post("/v1/plans", content=body, headers={"X-CSRF-Token": me["csrf_token"]})
        assert made_on_a.status_code == 201
    assert verify_chain(db).ok
    for srv in (a, b):
        assert "Traceback" not in srv.logs() and "unhandled" not in srv.logs()
