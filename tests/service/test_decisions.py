"""Decisions of record, sign-off, review comments and the worklist (issue 8), against a real
server on loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

import copy
import json
import re

import pytest
from sqlalchemy.exc import DBAPIError

from carepath.api.audit import verify_chain
from carepath.api.decisions import code_basis
from carepath.api.records import NewOverride
from carepath.engine import CarePlan

DOSE = "4 mg sublingual, then 4 mg after 1 hour if COWS still 8 or more"


def _create(c, account, intake) -> dict:
    r = c.post("/v1/plans", content=json.dumps(intake), headers=account.headers)
    assert r.status_code == 201, r.text
    return r.json()


def _decide(c, account, pid, **body):
    return c.post(f"/v1/plans/{pid}/overrides", json=body, headers=account.headers)


def _items(plan: dict) -> dict[str, dict]:
    """Items by code; where a plan lists a code twice (before Plan v2), the non-caution one."""
    found: dict[str, dict] = {}
    for item in (i for p in plan["phases"] for i in p["items"]):
        if item["code"] not in found or found[item["code"]]["kind"] == "caution":
            found[item["code"]] = item
    return found


def _psychosocial(plan: dict) -> str:
    return next(c for c in _items(plan) if c.startswith("psy.") and _items(plan)[c]["kind"] != "avoid")


def test_decisions_reach_the_json_the_reports_and_the_fhir_status(server, example_intake):
    alice = server.users.clinician
    with server.client() as c:
        plan = _create(c, alice, example_intake)
        pid = plan["plan_id"]
        declined = _psychosocial(plan)
        assert (
            _decide(
                c, alice, pid, code="moud.buprenorphine", action="modify", dose=DOSE, reason="Home start"
            ).status_code
            == 201
        )
        assert (
            _decide(
                c, alice, pid, code=declined, action="decline", reason="Already in a group elsewhere"
            ).status_code
            == 201
        )
        assert _decide(c, alice, pid, code="hr.naloxone", action="accept").status_code == 201

        # a decline needs a reason; a modification needs wording or a dose
        bad = _decide(c, alice, pid, code="hr.naloxone", action="decline")
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "body.reason"
        bad = _decide(c, alice, pid, code="hr.naloxone", action="modify", reason="x")
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "body.replacement_text"

        got = c.get(f"/v1/plans/{pid}", headers=alice.headers).json()
        decisions = got["record"]["decisions"]
        assert decisions["moud.buprenorphine"]["status"] == "modified"
        assert decisions["moud.buprenorphine"]["dose"] == DOSE
        assert decisions[declined] == {
            **decisions[declined],
            "status": "declined",
            "fhir_activity_status": "cancelled",
        }
        assert decisions["hr.naloxone"]["fhir_activity_status"] == "scheduled"
        assert got["record"]["status"] == "draft" and got["record"]["signature"] is None
        assert c.get(f"/v1/plans/{pid}/decisions", headers=alice.headers).json()["decisions"] == decisions

        html = c.get(f"/v1/plans/{pid}/report.html", headers=alice.headers).text
        assert DOSE in html and "Already in a group elsewhere" in html
        assert '<div class="line ' in html and "declined" in html
        suggested = _items(plan)["moud.buprenorphine"]["text"]
        appendix = html.split("Evidence appendix", 1)[1]
        assert suggested in appendix  # the original suggestion stays visible
        patient = c.get(f"/v1/plans/{pid}/report.html?audience=patient", headers=alice.headers).text
        assert DOSE in patient  # the clinician's dose, in their words
        assert "DRAFT" in patient  # unsigned: marked draft


def test_sign_off_seals_the_version_and_only_clinicians_sign(server, example_intake):
    alice, rita = server.users.clinician, server.users.reviewer
    with server.client() as c:
        plan = _create(c, alice, example_intake)
        pid = plan["plan_id"]
        assert (
            _decide(c, alice, pid, code="moud.buprenorphine", action="modify", dose=DOSE).status_code == 201
        )
        sign = {"name": "Dr Ana Ruiz", "credentials": "MD", "attest": True}
        assert c.post(f"/v1/plans/{pid}/sign", json=sign, headers=rita.headers).status_code == 403
        assert (
            c.post(f"/v1/plans/{pid}/sign", json={**sign, "attest": False}, headers=alice.headers).status_code
            == 422
        )
        comment = c.post(
            f"/v1/plans/{pid}/comments", json={"text": "Check the HCV referral."}, headers=rita.headers
        )
        assert comment.status_code == 201 and comment.json()["role"] == "reviewer"

        signed = c.post(f"/v1/plans/{pid}/sign", json=sign, headers=alice.headers)
        assert signed.status_code == 200, signed.text
        record = signed.json()["record"]
        assert record["status"] == "signed"
        assert record["signature"]["verified"] is True and re.fullmatch(
            r"[0-9a-f]{64}", record["signature"]["content_sha256"]
        )
        assert record["signature"]["signer"] == alice.email and record["signature"]["name"] == "Dr Ana Ruiz"
        undecided = next(c_ for c_ in _items(plan) if c_ != "moud.buprenorphine")
        assert record["decisions"][undecided]["at_signing"] is True  # accepted by signing
        assert [x["text"] for x in record["comments"]] == ["Check the HCV referral."]

        # immutable: no decision, no second signature; comments still welcome
        late = _decide(c, alice, pid, code="hr.naloxone", action="accept")
        assert late.status_code == 409 and late.json()["error"] == "plan_signed"
        assert c.post(f"/v1/plans/{pid}/sign", json=sign, headers=alice.headers).status_code == 409
        assert (
            c.post(f"/v1/plans/{pid}/comments", json={"text": "Agreed."}, headers=rita.headers).status_code
            == 201
        )

        html = c.get(f"/v1/plans/{pid}/report.html", headers=alice.headers).text
        assert "Signed by Dr Ana Ruiz, MD" in html and record["signature"]["content_sha256"] in html
        assert "DRAFT - requires clinician review" not in html
        patient = c.get(f"/v1/plans/{pid}/report.html?audience=patient", headers=alice.headers).text
        assert "Dr Ana Ruiz" in patient and ">DRAFT<" not in patient

        assert [
            i["plan_id"] for i in c.get("/v1/plans?status=signed", headers=alice.headers).json()["items"]
        ] == [pid]
        assert pid not in c.get("/v1/plans?status=draft", headers=alice.headers).text

        # a change makes a new version: a draft, decisions carried, linked to the signed one
        v2 = c.post(f"/v1/plans/{pid}/reevaluate", headers=alice.headers)
        assert v2.status_code == 201
        got = c.get(f"/v1/plans/{v2.json()['plan_id']}", headers=alice.headers).json()
        assert got["record"]["status"] == "draft" and got["record"]["previous_id"] == pid
        assert got["record"]["decisions"]["moud.buprenorphine"]["carried"] is True
        assert got["record"]["decisions"]["moud.buprenorphine"]["dose"] == DOSE

    # the database refuses a decision on a signed version even if the service let one through
    with server.runtime.db.transaction() as tx:
        row = tx.overrides_of(pid)[0]
    with pytest.raises(DBAPIError, match="signed"), server.runtime.db.transaction() as tx:
        tx.insert_override(NewOverride(**{**_new_override_fields(row), "plan_id": pid}))
    assert verify_chain(server.runtime.db).ok


def _new_override_fields(row) -> dict:
    return {
        "plan_id": row.plan_id,
        "org_id": 1,
        "author_id": row.author_id,
        "created_at": row.created_at,
        "section": row.section,
        "code": row.code,
        "action": "accept",
        "reason": "",
        "replacement_text": None,
        "replacement_kind": None,
        "rule_ids": (),
    }


def test_reevaluation_carries_unchanged_decisions_and_flags_changed_ones(server, example_intake):
    alice = server.users.clinician
    with server.client() as c:
        plan = _create(c, alice, example_intake)
        pid = plan["plan_id"]
        for code in _items(plan):
            assert _decide(c, alice, pid, code=code, action="accept", reason="reviewed").status_code == 201
        corrected = copy.deepcopy(example_intake)
        corrected["patient"]["sex_at_birth"] = "female"
        corrected["patient"]["pregnant"] = True
        v2 = c.post(f"/v1/plans/{pid}/reevaluate", content=json.dumps(corrected), headers=alice.headers)
        assert v2.status_code == 201, v2.text
        new = c.get(f"/v1/plans/{v2.json()['plan_id']}", headers=alice.headers).json()

    old_plan, new_plan = (
        CarePlan.model_validate({k: v for k, v in p.items() if k != "record"}) for p in (plan, new)
    )
    before = {code: code_basis(old_plan, code) for code in old_plan.codes()}
    after = {code: code_basis(new_plan, code) for code in new_plan.codes()}
    unchanged = {code for code in before if after.get(code) == before[code]}
    assert unchanged and unchanged != set(before), "the correction should change some lines and keep others"
    carried = {code for code, d in new["record"]["decisions"].items() if d["carried"]}
    assert carried == unchanged
    flagged = {f["code"] for f in new["record"]["review_flags"]}
    assert flagged == set(before) - unchanged
    whys = {f["code"]: f["why"] for f in new["record"]["review_flags"]}
    assert all(whys[c] == ("basis_changed" if c in after else "no_longer_in_plan") for c in flagged)
    intake_changes = {ch["code"] for ch in new["record"]["changes"] if ch["what"] == "intake"}
    assert intake_changes == {"patient.sex_at_birth", "patient.pregnant"}


def test_missing_information_marked_not_applicable_is_carried_and_leaves_the_list(server, example_intake):
    alice = server.users.clinician
    with server.client() as c:
        plan = _create(c, alice, example_intake)
        pid = plan["plan_id"]
        field = plan["missing_information"][0]["field"]
        r = _decide(c, alice, pid, code=field, action="not_applicable", reason="Never incarcerated.")
        assert r.status_code == 201 and r.json()["section"] == "missing"
        assert _decide(c, alice, pid, code="hr.naloxone", action="not_applicable").status_code == 422
        html = c.get(f"/v1/plans/{pid}/report.html", headers=alice.headers).text
        assert "Marked not applicable" in html and "Never incarcerated." in html
        v2 = c.post(f"/v1/plans/{pid}/reevaluate", headers=alice.headers).json()["plan_id"]
        html2 = c.get(f"/v1/plans/{v2}/report.html", headers=alice.headers).text
        assert "Never incarcerated." in html2


def test_worklist_lists_status_patient_alerts_and_searches_in_the_body(server, example_intake):
    alice, bob = server.users.clinician, server.users.other_clinician
    with server.client() as c:
        one = copy.deepcopy(example_intake)
        one["patient"].update({"name": "Maria Testwoman", "id": "MRN-100_1"})
        two = copy.deepcopy(example_intake)
        two["patient"].update({"name": "John Other", "id": "MRN-200"})
        p1, p2 = _create(c, alice, one), _create(c, alice, two)
        _create(c, bob, one)  # another organisation: never listed
        listed = c.get("/v1/plans", headers=alice.headers).json()["items"]
        assert {i["plan_id"] for i in listed} == {
            p2["plan_id"],
            p1["plan_id"],
        }  # newest first (same second here)
        first = next(i for i in listed if i["plan_id"] == p1["plan_id"])
        assert first["patient_name"] == "Maria Testwoman" and first["patient_id"] == "MRN-100_1"
        assert first["status"] == "draft" and first["author"] == alice.email
        assert first["alerts"] == sorted(a["code"] for a in p1["alerts"])

        def search(**body) -> list[str]:
            r = c.post("/v1/plans/search", json=body, headers=alice.headers)
            assert r.status_code == 200, r.text
            return [i["plan_id"] for i in r.json()["items"]]

        assert search(patient="testwoman") == [p1["plan_id"]]
        assert search(patient="mrn-200") == [p2["plan_id"]]
        assert search(patient="MRN-100_1") == search(patient="maria testwoman") == [p1["plan_id"]]
        # whole words of the name or the MRN: the index is sealed (no substrings, no wildcards)
        assert search(patient="%") == search(patient="_") == search(patient="testwo") == []
        assert search(patient="maria", status="signed") == []
        page = c.post("/v1/plans/search", json={"limit": 1}, headers=alice.headers).json()
        assert len(page["items"]) == 1 and page["next_cursor"]
        rest = search(limit=1, cursor=page["next_cursor"])
        assert len(rest) == 1 and {rest[0], page["items"][0]["plan_id"]} == {p1["plan_id"], p2["plan_id"]}
        assert (
            c.post("/v1/plans/search", json={"patient": "x", "age": 3}, headers=alice.headers).status_code
            == 422
        )
