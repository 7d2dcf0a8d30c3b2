"""Lint: a table of broken packs, each with the finding it must produce (level, rule, words),
and the refusal that follows from an error. Loading errors (schema, facts, codes, citations,
flag cycles) have their own table in tests/unit/test_engine_failures.py; these packs all load."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from carepath.engine import RulePackError, load_rulepack
from carepath.engine.governance import lint, lint_errors, require_clean
from carepath.engine.lint import CHECKS, Finding, LintContext, can_hold, run_checks, uncovered_intake
from carepath.engine.rulespec import parse_condition
from tests.rulepacks import BASE_RULES, make_pack, rule

TODAY = date(2026, 12, 2)
NALOXONE = BASE_RULES[0]
LEVEL = BASE_RULES[1]


def _base(*rules: dict[str, Any]) -> dict[str, Any]:
    """Replace the two base rules (naloxone always, outpatient need always) with ``rules``."""
    return {"00-base.yaml": list(rules)}


def _when(cond: Any, **extra: Any) -> dict[str, Any]:
    return rule("OUD-TST-010", when=cond, **extra)


def _loc(rule_id: str, when: Any, effect: str = "need", **extra: Any) -> dict[str, Any]:
    return rule(
        rule_id,
        when=when,
        phase="level_of_care",
        then=[{"code": "loc.outpatient", "effect": effect}],
        **extra,
    )


def _nal(rule_id: str, when: Any, kind: str = "recommend", **extra: Any) -> dict[str, Any]:
    action: dict[str, Any] = {"code": "hr.naloxone", "kind": kind}
    if kind == "caution":  # a caution says what to watch for in its own words
        action["text"] = "Check the naloxone kit has not expired."
    return rule(rule_id, when=when, then=[action], **extra)


FENTANYL = {"fact": "uses_fentanyl", "is": True}
NOT_FENTANYL = {"not": FENTANYL}
FIRES_FENTANYL = {
    "fires": [{"intake": {"substance_use": {"opioids": ["fentanyl"]}}}],
    "does_not_fire": [{"intake": {}}],
}

# (case, files, expected findings as (level, rule id, words in the message))
BROKEN: list[tuple[str, dict[str, Any], list[tuple[str, str, str]]]] = [
    (
        "no-active-rules",
        _base({**NALOXONE, "status": "draft"}, {**LEVEL, "status": "retired"}),
        [("error", "(pack)", "no active rules")],
    ),
    (
        "no-naloxone-rule",
        _base(LEVEL),
        [("error", "(pack)", "no active rule recommends hr.naloxone")],
    ),
    (
        "naloxone-only-as-caution",
        _base(_nal("OUD-TST-001", "always", kind="caution"), LEVEL),
        [("error", "(pack)", "no active rule recommends hr.naloxone")],
    ),
    (
        "naloxone-only-with-fentanyl",
        _base(_nal("OUD-TST-001", FENTANYL, examples=FIRES_FENTANYL), LEVEL),
        [("error", "(pack)", "hr.naloxone is not recommended for every intake")],
    ),
    (
        "naloxone-needs-a-flag",
        _base(
            _nal(
                "OUD-TST-001",
                {"all": [{"flag": "risk"}]},
                examples={"fires": [{"intake": {}}], "does_not_fire": [{"intake": {}}]},
            ),
            rule("OUD-TST-003", when="always", then=[], sets=["risk"]),
            LEVEL,
        ),
        [("error", "(pack)", "hr.naloxone is not recommended for every intake")],
    ),
    (
        "no-baseline-level",
        _base(NALOXONE),
        [("error", "(pack)", "no active rule gives a baseline level of care")],
    ),
    (
        "level-only-as-floor",
        _base(NALOXONE, _loc("OUD-TST-002", "always", effect="floor")),
        [("error", "(pack)", "no active rule gives a baseline level of care")],
    ),
    (
        "level-only-for-fentanyl",
        _base(NALOXONE, _loc("OUD-TST-002", FENTANYL, examples=FIRES_FENTANYL)),
        [("error", "(pack)", "not every intake gets a baseline level of care")],
    ),
    (
        "level-with-a-gap-for-unknowns",  # fentanyl yes / fentanyl no, but unknown falls through
        _base(
            NALOXONE,
            _loc("OUD-TST-002", FENTANYL, examples=FIRES_FENTANYL),
            _loc(
                "OUD-TST-003",
                {"fact": "uses_fentanyl", "is": False},
                examples={
                    "fires": [{"intake": {"substance_use": {"opioids": ["heroin"]}}}],
                    "does_not_fire": [{"intake": {}}],
                },
            ),
        ),
        [("error", "(pack)", "uses_fentanyl unknown")],
    ),
    (
        "contradiction-two-values",
        {
            "50-x.yaml": [
                _when({"all": [{"fact": "stage", "is": "active_use"}, {"fact": "stage", "is": "remission"}]})
            ]
        },
        [("error", "OUD-TST-010", "can never hold (contradictory tests on stage)")],
    ),
    (
        "contradiction-numbers",
        {
            "50-x.yaml": [
                _when({"all": [{"fact": "cows_score", "below": 5}, {"fact": "cows_score", "above": 10}]})
            ]
        },
        [("error", "OUD-TST-010", "contradictory tests on cows_score")],
    ),
    (
        "contradiction-unknown-and-value",
        {
            "50-x.yaml": [
                _when(
                    {"all": [{"fact": "cows_score", "known": False}, {"fact": "cows_score", "at_least": 8}]}
                )
            ]
        },
        [("error", "OUD-TST-010", "can never hold")],
    ),
    (
        "contradiction-in-and-not-in",
        {
            "50-x.yaml": [
                _when(
                    {
                        "all": [
                            {"fact": "stage", "in": ["relapse", "remission"]},
                            {"fact": "stage", "not_in": ["relapse", "remission"]},
                        ]
                    }
                )
            ]
        },
        [("error", "OUD-TST-010", "contradictory tests on stage")],
    ),
    (
        "contradiction-true-and-false",
        {"50-x.yaml": [_when({"all": [{"fact": "hiv", "is": True}, {"fact": "hiv", "is": False}]})]},
        [("error", "OUD-TST-010", "contradictory tests on hiv")],
    ),
    (
        "contradiction-x-and-not-x",
        {"50-x.yaml": [_when({"all": [{"fact": "hcv", "is": True}, {"not": {"fact": "hcv", "is": True}}]})]},
        [("error", "OUD-TST-010", "contradictory tests on hcv")],
    ),
    (
        "contradiction-nested-any",  # not (a or not a): never
        {
            "50-x.yaml": [
                _when({"not": {"any": [{"fact": "hiv", "is": True}, {"not": {"fact": "hiv", "is": True}}]}})
            ]
        },
        [("error", "OUD-TST-010", "can never hold")],
    ),
    (
        "contradiction-outside-range",  # dsm5_criteria_met is 0-11
        {"50-x.yaml": [_when({"fact": "dsm5_criteria_met", "above": 11})]},
        [("error", "OUD-TST-010", "can never hold")],
    ),
    (
        "contradiction-always-known-fact-unknown",  # age is always known
        {"50-x.yaml": [_when({"fact": "age", "known": False})]},
        [("error", "OUD-TST-010", "can never hold")],
    ),
    (
        "flag-set-only-by-a-dead-rule",
        {
            "50-x.yaml": [
                _when(
                    {"all": [{"fact": "hiv", "is": True}, {"fact": "hiv", "is": False}]},
                    then=[],
                    sets=["dead"],
                ),
                rule(
                    "OUD-TST-011",
                    when={"all": [{"flag": "dead"}]},
                    examples={"fires": [{"intake": {}}], "does_not_fire": [{"intake": {}}]},
                ),
            ]
        },
        [("error", "OUD-TST-011", "needs flag 'dead', which no rule that can fire sets")],
    ),
    (
        "flag-chain-from-a-dead-rule",
        {
            "50-x.yaml": [
                _when(
                    {"all": [{"fact": "hiv", "is": True}, {"fact": "hiv", "is": False}]}, then=[], sets=["a"]
                ),
                rule(
                    "OUD-TST-011",
                    when={"all": [{"flag": "a"}]},
                    then=[],
                    sets=["b"],
                    examples={"fires": [{"intake": {}}], "does_not_fire": [{"intake": {}}]},
                ),
                rule(
                    "OUD-TST-012",
                    when={"all": [{"flag": "b"}]},
                    examples={"fires": [{"intake": {}}], "does_not_fire": [{"intake": {}}]},
                ),
            ]
        },
        [("error", "OUD-TST-012", "needs flag 'b'")],
    ),
    (
        "fires-example-never-fires",
        {
            "50-x.yaml": [
                _when(
                    FENTANYL,
                    examples={
                        "fires": [{"intake": {"substance_use": {"opioids": ["heroin"]}}, "note": "heroin"}],
                        "does_not_fire": [{"intake": {}}],
                    },
                )
            ]
        },
        [("error", "OUD-TST-010", "example fires[1] (heroin) never fires the rule")],
    ),
    (
        "counter-example-fires",
        {
            "50-x.yaml": [
                _when(
                    FENTANYL,
                    examples={
                        "fires": [{"intake": {"substance_use": {"opioids": ["fentanyl"]}}}],
                        "does_not_fire": [{"intake": {"substance_use": {"opioids": ["fentanyl"]}}}],
                    },
                )
            ]
        },
        [("error", "OUD-TST-010", "counter-example does_not_fire[1] fires the rule")],
    ),
    (
        "example-is-not-a-valid-intake",
        {
            "50-x.yaml": [
                _when(
                    FENTANYL,
                    examples={
                        "fires": [{"intake": {"patient": {"sex_at_birth": "male", "pregnant": True}}}],
                        "does_not_fire": [{"intake": {}}],
                    },
                )
            ]
        },
        [("error", "OUD-TST-010", "invalid example intake: patient.pregnant")],
    ),
    (
        "example-with-an-unknown-field",
        {"50-x.yaml": [rule("OUD-TST-010", examples={"fires": [{"intake": {"patient": {"shoe_size": 9}}}]})]},
        [("error", "OUD-TST-010", "invalid example intake")],
    ),
    (
        "recommends-and-avoids",
        {
            "50-x.yaml": [
                rule(
                    "OUD-TST-010",
                    then=[
                        {"code": "moud.methadone", "kind": "recommend"},
                        {"code": "moud.methadone", "kind": "avoid"},
                    ],
                )
            ]
        },
        [("error", "OUD-TST-010", "both recommends and avoids moud.methadone")],
    ),
    (
        "past-review-date",
        {"50-x.yaml": [rule("OUD-TST-010", review_date="2026-01-31")]},
        [("warning", "OUD-TST-010", "past its review date (2026-01-31)")],
    ),
    (
        "unconfirmed-evidence",
        {"50-x.yaml": [rule("OUD-TST-010", confirmation="design_inference")]},
        [("info", "OUD-TST-010", "evidence basis is design inference")],
    ),
]


@pytest.mark.parametrize(("files", "expected"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_a_broken_pack_gets_its_finding(
    tmp_path: Path, files: dict[str, Any], expected: list[tuple[str, str, str]]
):
    pack = load_rulepack(make_pack(tmp_path, files))
    findings = lint(pack, TODAY)
    for level, rule_id, words in expected:
        assert any(f.level == level and f.rule_id == rule_id and words in f.message for f in findings), (
            f"no {level} for {rule_id} saying {words!r}; got:\n" + "\n".join(map(str, findings))
        )
    errors = [f for f in findings if f.level == "error"]
    if any(level == "error" for level, _, _ in expected):
        with pytest.raises(RulePackError, match="does not lint clean") as refused:
            require_clean(pack)
        assert "\n" not in str(refused.value)
        assert lint_errors(pack) == errors
    else:
        assert errors == [], errors
        require_clean(pack)


def test_the_table_is_big_enough_and_names_are_unique():
    assert len(BROKEN) >= 20 and len({b[0] for b in BROKEN}) == len(BROKEN)


def test_the_shipped_pack_lints_clean(pack):
    assert lint_errors(pack) == []
    require_clean(pack)


def test_the_base_test_pack_lints_clean(tmp_path: Path):
    pack = load_rulepack(make_pack(tmp_path, {}))
    assert [f for f in lint(pack, TODAY) if f.level != "info"] == []


def test_errors_do_not_depend_on_the_date(tmp_path: Path):
    old = rule("OUD-TST-010", review_date="2020-01-01", reviewed_on="2019-01-01")
    pack = load_rulepack(make_pack(tmp_path, {"50-x.yaml": [old]}))
    assert [f.level for f in lint(pack, date(2099, 1, 1)) if f.rule_id == "OUD-TST-010"] == ["warning"]
    require_clean(pack)


def test_unused_facts_and_codes_are_information(tmp_path: Path):
    findings = lint(load_rulepack(make_pack(tmp_path, {})), TODAY)
    assert Finding("info", "(pack)", "fact 'cows_score' is not used by any rule", "unused-fact") in findings
    assert Finding("info", "(pack)", "code 'moud.methadone' is never produced", "unused-code") in findings


def test_population_check_names_rules_no_synthetic_intake_fires(tmp_path: Path):
    rare = rule(
        "OUD-TST-010",
        when={"all": [{"fact": "age", "above": 100}, {"fact": "pregnant", "is": True}]},
        examples={
            "fires": [{"intake": {"patient": {"age": 101, "sex_at_birth": "female", "pregnant": True}}}],
            "does_not_fire": [{"intake": {}}],
        },
    )
    pack = load_rulepack(make_pack(tmp_path, {"50-x.yaml": [rare]}))
    found = [f for f in lint(pack, TODAY, population=200, seed=3) if f.check == "population"]
    assert [f.rule_id for f in found] == ["OUD-TST-010"]
    assert "none of 200 synthetic intakes (seed 3)" in found[0].message
    assert not [f for f in lint(pack, TODAY) if f.check == "population"]  # off by default


def test_a_new_check_is_one_function_in_the_list(tmp_path: Path):
    """How the lead adds a check (e.g. co-firing pairs): a function of the shared context."""
    pack = load_rulepack(make_pack(tmp_path, {}))

    def check_two_rules_always_fire(ctx: LintContext):
        together = sum(1 for firings in ctx.population_firings if len(firings) >= 2)
        yield Finding("info", "(pack)", f"{together} of {ctx.population} intakes fire two rules", "demo")

    ctx = LintContext(pack, TODAY, population=20)
    assert run_checks(ctx, [check_two_rules_always_fire]) == [
        Finding("info", "(pack)", "20 of 20 intakes fire two rules", "demo")
    ]
    assert check_two_rules_always_fire not in CHECKS


@pytest.mark.parametrize(
    ("cond", "holds"),
    [
        ("always", True),
        ({"fact": "cows_score", "at_least": 8}, True),
        ({"all": [{"fact": "cows_score", "at_least": 8}, {"fact": "cows_score", "below": 9}]}, True),
        ({"all": [{"fact": "cows_score", "at_least": 9}, {"fact": "cows_score", "below": 9}]}, False),
        ({"all": [{"fact": "last_use_hours", "above": 12}, {"fact": "last_use_hours", "below": 12.5}]}, True),
        ({"all": [{"fact": "stage", "is_not": "remission"}, {"fact": "stage", "known": False}]}, False),
        ({"all": [{"not": {"fact": "stage", "is": "remission"}}, {"fact": "stage", "known": False}]}, True),
        ({"any": [{"fact": "hiv", "is": True}, {"fact": "hiv", "is": False}]}, True),
        ({"all": [{"flag": "x"}, {"fact": "hiv", "is": True}]}, True),
    ],
)
def test_can_hold(cond: Any, holds: bool):
    assert can_hold(parse_condition(cond))[0] is holds


def test_coverage_finds_the_gap_and_proves_the_shipped_levels(pack):
    gap = uncovered_intake(
        [parse_condition({"fact": "hiv", "is": True}), parse_condition({"fact": "hiv", "is": False})]
    )
    assert gap == {"hiv": None}
    needs = [r.cond for r in pack.rules if any(t.effect == "need" for t in r.rule.then)]
    assert uncovered_intake(needs) is None
    assert uncovered_intake([]) == {}


def test_the_lint_cli_exits_1_on_errors_and_0_on_a_clean_pack(tmp_path: Path):
    from typer.testing import CliRunner

    from carepath.api.cli import app

    broken = make_pack(tmp_path / "a", {"50-x.yaml": [_when({"fact": "dsm5_criteria_met", "above": 11})]})
    result = CliRunner().invoke(app, ["rules", "lint", "--rules-dir", str(broken), "-q"])
    assert result.exit_code == 1, result.output
    assert "ERROR   OUD-TST-010: its condition can never hold" in result.output
    assert "3 active rules, 2 errors" in result.output  # the rule, and its example that cannot fire
    clean = make_pack(tmp_path / "b", {})
    result = CliRunner().invoke(app, ["rules", "lint", "--rules-dir", str(clean), "--population", "50"])
    assert result.exit_code == 0, result.output
    assert "0 errors, 0 warnings" in result.output


def test_yaml_of_the_table_round_trips(tmp_path: Path):
    """The packs above are written as YAML a clinical lead could read (no Python objects)."""
    for _, files, _ in BROKEN:
        for content in files.values():
            assert yaml.safe_load(yaml.safe_dump({"rules": content}))["rules"] == content
