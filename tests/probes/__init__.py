"""The 76 probe intakes of the December 2026 clinical review (docs/clinical/review-2026-12.md,
Appendix A), rebuilt from tests/probes/review-2026-12.yaml, and detectors for the review's five
dangerous (S1) findings. Used by tests/unit/test_review_probes.py and bench/probes.py."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

__all__ = ["probe_intakes", "S1_DETECTORS", "duplicated_codes", "s1_findings"]

HERE = Path(__file__).parent


def _set(doc: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for key in parents:
        doc = doc.setdefault(key, {})
    doc[leaf] = copy.deepcopy(value)


def probe_intakes() -> dict[str, dict[str, Any]]:
    """Probe name -> intake (a plain dict, as the reviewer ran it)."""
    doc = yaml.safe_load((HERE / "review-2026-12.yaml").read_text(encoding="utf-8"))
    built: dict[str, dict[str, Any]] = {}
    for name, spec in doc["probes"].items():
        if spec.get("no_base"):
            built[name] = copy.deepcopy(spec["intake"])
            continue
        parent = next((n for n in built if n.split("_")[0] == spec.get("as")), None)
        intake = copy.deepcopy(built[parent] if parent else doc["base"])
        for path, value in spec.get("set", {}).items():
            _set(intake, path, value)
        built[name] = intake
    return built


def _items(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for p in plan["phases"] for i in p["items"]]


def duplicated_codes(plan: dict[str, Any]) -> list[str]:
    """Codes that stand in more than one item of the plan (Plan v2 allows one)."""
    seen: dict[str, int] = {}
    for item in _items(plan):
        seen[item["code"]] = seen.get(item["code"], 0) + 1
    return sorted(c for c, n in seen.items() if n > 1)


def _texts(plan: dict[str, Any], code: str, kinds: tuple[str, ...] = ("recommend", "consider")) -> str:
    return " ".join(
        i["text"]
        for i in _items(plan)
        if i["code"] == code and i["kind"] in kinds and i.get("start", "now") == "now"
    )


def _all_text(plan: dict[str, Any]) -> str:
    parts = [i["text"] for i in _items(plan)]
    parts += [c["text"] for i in _items(plan) for c in i.get("cautions", [])]
    return " ".join(parts)


def _s1_unmeasured_withdrawal(plan: dict[str, Any], intake: dict[str, Any]) -> bool:
    """#1: 'withdrawal has passed, start buprenorphine now' with COWS never measured."""
    cows = intake.get("substance_use", {}).get("cows_score")
    said = "withdrawal has already passed" in _all_text(plan).lower()
    return cows is None and said


def _s1_adjunct_caps(plan: dict[str, Any], intake: dict[str, Any]) -> bool:
    """#2: loperamide offered without its dose cap, or ondansetron/loperamide offered at QTc > 500."""
    text = _all_text(plan).lower()
    capped = ("loperamide at most 8 mg" in text, "no loperamide" in text, "loperamide only within" in text)
    if "loperamide" in text and not any(capped):
        return True
    qtc = intake.get("medical", {}).get("qtc_ms") or 0
    offered_qt_adjunct = ("ondansetron" in text and "no ondansetron" not in text) or (
        "loperamide" in text and "no loperamide" not in text
    )
    return qtc > 500 and offered_qt_adjunct


def _s1_continue_at_qtc(plan: dict[str, Any], intake: dict[str, Any]) -> bool:
    """#3: methadone with QTc > 500 ms: 'continue at the effective dose' and no actionable switch."""
    on_methadone = (intake.get("current_treatment") or {}).get("moud") == "methadone"
    qtc = intake.get("medical", {}).get("qtc_ms") or 0
    if not (on_methadone and qtc > 500):
        return False
    continue_text = _texts(plan, "moud.continue_current").lower()
    switch = {"moud.buprenorphine", "moud.buprenorphine_low_dose_induction"} & {
        i["code"] for i in _items(plan) if i["kind"] in ("recommend", "consider")
    }
    return "effective dose" in continue_text or not switch


def _s1_child_pugh_c(plan: dict[str, Any], intake: dict[str, Any]) -> bool:
    """#4: severe hepatic impairment with standard dosing, the combination product or ambulatory WM
    beside a hospital-level placement."""
    if intake.get("medical", {}).get("hepatic_impairment") != "severe":
        return False
    bup = _texts(plan, "moud.buprenorphine").lower()
    methadone = _texts(plan, "moud.methadone").lower()
    symptomatic = _texts(plan, "wm.symptomatic").lower()
    ambulatory = bool(_texts(plan, "wm.ambulatory"))
    high_level = plan["level_of_care"]["code"] in ("loc.inpatient_monitored", "loc.inpatient_managed")
    return (
        "4-8 mg" in bup
        or "16-24 mg" in bup
        or ("naloxone" in bup and "mono" not in bup)
        or "60-120 mg" in methadone
        or "2.88 mg" in symptomatic
        or (ambulatory and high_level)
    )


def _s1_benzo_detox(plan: dict[str, Any], intake: dict[str, Any]) -> bool:
    """#5: benzodiazepine use in withdrawal with no sedative-withdrawal plan and ambulatory detox."""
    su = intake.get("substance_use", {})
    if su.get("benzodiazepines") not in ("prescribed", "illicit") or intake.get("stage") != "in_withdrawal":
        return False
    codes = {i["code"] for i in _items(plan) if i["kind"] in ("recommend", "consider")}
    return "wm.sedative_withdrawal" not in codes or "wm.ambulatory" in codes


S1_DETECTORS: dict[str, Callable[[dict[str, Any], dict[str, Any]], bool]] = {
    "S1-1 withdrawal 'passed' with COWS unmeasured": _s1_unmeasured_withdrawal,
    "S1-2 loperamide/ondansetron without cap or QT warning": _s1_adjunct_caps,
    "S1-3 QTc > 500 on methadone: continue at effective dose": _s1_continue_at_qtc,
    "S1-4 Child-Pugh C: standard dosing / combination product": _s1_child_pugh_c,
    "S1-5 benzodiazepines in withdrawal without a sedative plan": _s1_benzo_detox,
}


def s1_findings(plan: dict[str, Any], intake: dict[str, Any]) -> list[str]:
    return [name for name, found in S1_DETECTORS.items() if found(plan, intake)]
