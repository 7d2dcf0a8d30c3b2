"""Units: the reviewed notice, the follow-up schedule, the medication table rule, patients."""

from __future__ import annotations

import hashlib
from datetime import date

from carepath.reports import Patient, patient_from_intake
from carepath.reports.medications import choice_is_open, comparison
from carepath.reports.notices import PART2_CITATION, PART2_NOTICE, PART2_REVIEWED_ON
from carepath.reports.patient import as_patient
from carepath.reports.schedule import follow_up_schedule

# Changing the notice needs a compliance review: update this hash and PART2_REVIEWED_ON together.
NOTICE_SHA256 = "d82205a18044f9f45776343d91e26d8ddb44bf13e136af169ec73d755facd9a8"


def test_part2_notice_is_the_reviewed_2024_statement():
    assert PART2_CITATION == "42 CFR 2.32(a)(1)"
    assert PART2_NOTICE.startswith("This record which has been disclosed to you is protected by Federal")
    assert "45 CFR part 164, subparts A and E" in PART2_NOTICE
    assert PART2_NOTICE.endswith("(see 42 CFR 2.31).")
    assert hashlib.sha256(PART2_NOTICE.encode()).hexdigest() == NOTICE_SHA256
    assert date(2024, 4, 16) <= PART2_REVIEWED_ON  # reviewed after the 2024 final rule took effect


def _calm(plan):
    """No alerts, level not lowered by preference, no medical or urgent psychiatric extras."""
    level = plan.level_of_care.model_copy(update={"adjusted_by_preference": False})
    phases = [p for p in plan.phases if p.phase not in ("medical", "dual_diagnosis")]
    return plan.model_copy(update={"alerts": [], "level_of_care": level, "phases": phases})


def test_standard_schedule(rich_plan):
    plan = _calm(rich_plan)
    visits = follow_up_schedule(plan)
    assert [(v.days, v.on.isoformat()) for v in visits] == [
        (1, "2026-03-03"),
        (7, "2026-03-09"),
        (30, "2026-04-01"),
        (90, "2026-05-31"),
    ]


def test_schedule_is_sooner_with_high_risk_or_lowered_level(rich_plan):
    calm = _calm(rich_plan)
    risky = calm.model_copy(
        update={"alerts": [a for a in rich_plan.alerts if a.code == "alert.high_overdose_risk"]}
    )
    assert [v.days for v in follow_up_schedule(risky)] == [1, 3, 7, 14, 30, 90]
    assert follow_up_schedule(risky)[0].why == "high overdose risk"
    lowered = calm.model_copy(update={"level_of_care": rich_plan.level_of_care})
    assert [v.days for v in follow_up_schedule(lowered)] == [1, 3, 7, 14, 30, 90]
    assert "lowered by the patient's preference" in follow_up_schedule(lowered)[0].why


def test_schedule_extras(rich_plan):
    keys = {v.key: v.days for v in follow_up_schedule(rich_plan)}
    assert keys["same_day_psychiatry"] == 0 and keys["obstetric_visit"] == 7 and keys["ecg"] == 30


def test_medication_choice(rich_plan):
    assert choice_is_open(rich_plan, "naltrexone")
    assert not choice_is_open(rich_plan, "buprenorphine")
    assert not choice_is_open(rich_plan, None)
    assert not choice_is_open(rich_plan, "no_preference")
    both = rich_plan.model_copy(deep=True)
    med = next(p for p in both.phases if p.phase == "medication")
    methadone = next(i for i in med.items if i.code == "moud.methadone")
    med.items[med.items.index(methadone)] = methadone.model_copy(update={"kind": "consider"})
    assert choice_is_open(both, "buprenorphine")
    rows = {r.family: r for r in comparison(rich_plan, "naltrexone")}
    assert rows["naltrexone"].preferred
    assert ("avoid", "Do not start XR-naltrexone in pregnancy.") in rows["naltrexone"].plan_says
    assert rows["methadone"].plan_says[0][0] == "caution"


def test_patient_sources(example_intake):
    p = patient_from_intake(example_intake)
    assert p.age == 34 and p.medication_preference == "buprenorphine"
    assert as_patient({"name": "A", "id": "1"}) == Patient(id="1", name="A")
    assert as_patient(example_intake.patient).age == 34
    assert as_patient(None) is None
