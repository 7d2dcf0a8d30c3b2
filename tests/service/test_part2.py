"""42 CFR Part 2: security labels and the redisclosure notice on FHIR and CDS output; consent
records and the accounting of disclosures, per patient, exportable (JSON and CSV)."""

from __future__ import annotations

import csv
import io
import json

import pytest

from carepath.api.part2 import NOTICE_EXTENSION, SECURITY_LABELS, label_cds, label_fhir
from carepath.reports.notices import PART2_NOTICE

MRN = "mrn-part2-0001"


@pytest.fixture(scope="module")
def plan(shared_server, example_intake) -> dict:
    intake = {**example_intake, "patient": {**example_intake["patient"], "id": MRN}}
    with shared_server.client() as c:
        r = c.post("/v1/plans", content=json.dumps(intake), headers=shared_server.users.clinician.headers)
    assert r.status_code == 201
    return r.json()


def _codes(meta: dict) -> set[tuple[str, str]]:
    return {(c["system"], c["code"]) for c in meta.get("security", [])}


WANTED = {(c["system"], c["code"]) for c in SECURITY_LABELS}


def test_the_fhir_bundle_and_every_resource_carry_the_labels_and_the_notice(shared_server, plan):
    with shared_server.client() as c:
        r = c.get(f"/v1/plans/{plan['plan_id']}/fhir", headers=shared_server.users.clinician.headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+json")
    bundle = r.json()
    assert _codes(bundle["meta"]) >= WANTED
    assert ("http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "R") in _codes(bundle["meta"])
    assert ("http://terminology.hl7.org/CodeSystem/v3-ActCode", "42CFRPart2") in _codes(bundle["meta"])
    for entry in bundle["entry"]:
        meta = entry["resource"]["meta"]
        assert _codes(meta) >= WANTED, entry["resource"]["resourceType"]
        notices = [e["valueString"] for e in meta["extension"] if e["url"] == NOTICE_EXTENSION]
        assert notices == [PART2_NOTICE]


def test_the_labelled_bundle_is_still_valid_fhir(shared_server, plan):
    from fhir.resources.R4B.bundle import Bundle

    with shared_server.client() as c:
        r = c.get(f"/v1/plans/{plan['plan_id']}/fhir", headers=shared_server.users.clinician.headers)
    Bundle.model_validate(r.json())


def test_every_cds_card_carries_the_notice_and_the_labels(shared_server):
    from tests.interop.test_http import EXAMPLE, hook_body

    with shared_server.client() as c:
        r = c.post(
            "/cds-services/carepath-oud-pathway",
            json=hook_body(EXAMPLE),
            headers=shared_server.users.clinician.headers,
        )
    assert r.status_code == 200, r.text[:300]
    cards = r.json()["cards"]
    assert cards
    for card in cards:
        assert PART2_NOTICE in card["detail"]
        assert {(x["system"], x["code"]) for x in card["extension"]["carepath-security-labels"]} == WANTED


def test_labelling_is_idempotent():
    bundle = {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "CarePlan"}}]}
    once = label_fhir(json.loads(json.dumps(bundle)))
    assert label_fhir(json.loads(json.dumps(once))) == once
    cds = {"cards": [{"summary": "s", "detail": "d"}]}
    assert label_cds(label_cds(json.loads(json.dumps(cds)))) == label_cds(json.loads(json.dumps(cds)))


def test_consent_and_accounting_of_disclosures_per_patient(shared_server, plan):
    users = shared_server.users
    h = users.clinician.headers
    pid = plan["plan_id"]
    with shared_server.client() as c:
        consent = c.post(
            "/v1/consents",
            json={"patient_id": MRN, "recipient": "Dr Rivera, Riverside Clinic", "purpose": "treatment"},
            headers=h,
        )
        assert consent.status_code == 201
        cid = consent.json()["consent_id"]
        found = c.post("/v1/consents/search", json={"patient_id": MRN}, headers=users.reviewer.headers).json()
        assert [x["consent_id"] for x in found] == [cid] and found[0]["active"] is True
        # another organisation sees nothing of this patient
        assert (
            c.post(
                "/v1/consents/search", json={"patient_id": MRN}, headers=users.other_reviewer.headers
            ).json()
            == []
        )
        d = c.post(
            "/v1/disclosures",
            json={
                "plan_id": pid,
                "recipient": "Dr Rivera, Riverside Clinic",
                "purpose": "treatment",
                "consent_id": cid,
            },
            headers=h,
        )
        assert d.status_code == 201
        other = c.post(
            "/v1/disclosures",
            json={"plan_id": pid, "recipient": "x", "purpose": "y"},
            headers=users.other_clinician.headers,
        )
        assert other.status_code == 422 and other.json()["errors"][0]["field"] == "body.plan_id"
        c.get(f"/v1/plans/{pid}/fhir", headers=h)  # served by carepath: in the accounting too
        acc = c.post("/v1/accounting", json={"patient_id": MRN}, headers=users.reviewer.headers)
        assert acc.status_code == 200
        rows = acc.json()
        assert any(
            r["source"] == "recorded" and r["consent_id"] == cid and r["recipient"].startswith("Dr Rivera")
            for r in rows
        )
        assert any(
            r["source"] == "audit"
            and r["what"] == "FHIR CarePlan bundle"
            and r["recipient"] == users.clinician.email
            for r in rows
        )
        assert all(r["plan_id"] == pid for r in rows)
        as_csv = c.post(
            "/v1/accounting",
            json={"patient_id": MRN},
            headers={**users.reviewer.headers, "Accept": "text/csv"},
        )
        assert as_csv.headers["content-type"].startswith("text/csv")
        table = list(csv.DictReader(io.StringIO(as_csv.text)))
        assert len(table) == len(rows) and {"at", "plan_id", "recipient", "purpose", "source"} <= set(
            table[0]
        )
        revoked = c.post(f"/v1/consents/{cid}/revoke", headers=h)
        assert revoked.status_code == 200 and revoked.json()["active"] is False
        assert c.post(f"/v1/consents/{cid}/revoke", headers=h).status_code == 404
        # nobody's patient id is in a URL or in the audit trail
    with shared_server.runtime.db.transaction(readonly=True) as tx:
        assert all(MRN not in json.dumps(e.__dict__) for e in tx.audit_entries())
