"""`rules diff` (version-bump guard; conditions, actions, citations added and removed),
`rules impact` (intakes named by file, line and id; level, code, alert, recommendation,
wording and rule-id changes; text, JSON and HTML with charts), `rules test` failures and
`rules release` (the frozen copy CI diffs against)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from carepath.api.cli import app
from carepath.engine import Engine, load_rulepack
from carepath.engine.governance import diff_packs, format_diff, format_impact, impact
from carepath.engine.synth import synth_intakes
from carepath.reports.render import render_impact_html
from tests.conftest import ROOT
from tests.rulepacks import BASE_RULES, make_pack, rule

CLI = CliRunner()
PACK_VERSION = yaml.safe_load((ROOT / "rules" / "pack.yaml").read_text())["version"]
"""The working pack's version: make_pack copies rules/pack.yaml, so a test pack "keeps" it."""
FENTANYL = {"fact": "uses_fentanyl", "is": True}
ON_FENTANYL = {
    "assessment_date": "2026-03-02",
    "patient": {"age": 30, "id": "P-7"},
    "substance_use": {"opioids": ["fentanyl"]},
}
ON_HEROIN = {
    "assessment_date": "2026-03-02",
    "patient": {"age": 40},
    "substance_use": {"opioids": ["heroin"]},
}


def _extra(**changes: Any) -> dict[str, Any]:
    """A fentanyl rule recommending sterile supplies; ``changes`` override any key."""
    doc = rule(
        "OUD-TST-010",
        when={"all": [FENTANYL]},
        then=[{"code": "hr.sterile_supplies", "kind": "recommend", "text": "Offer sterile supplies."}],
        examples={
            "fires": [{"intake": {"substance_use": {"opioids": ["fentanyl"]}}}],
            "does_not_fire": [{"intake": {}}],
        },
    )
    doc.update(changes)
    return doc


def _packs(
    tmp_path: Path, old: list[dict[str, Any]], new: list[dict[str, Any]], new_version: str = "2099.1.0"
):
    a = make_pack(tmp_path / "old", {"50-x.yaml": old})
    b = make_pack(tmp_path / "new", {"50-x.yaml": new})
    manifest = yaml.safe_load((b / "pack.yaml").read_text())
    manifest["version"] = new_version
    (b / "pack.yaml").write_text(yaml.safe_dump(manifest))
    return a, b


# --- diff ---------------------------------------------------------------------------------------


def test_diff_names_conditions_actions_and_citations(tmp_path: Path):
    old = [_extra(), rule("OUD-TST-011")]
    new = [
        _extra(
            version=2,
            when={"all": [FENTANYL, {"fact": "injects", "is": True}]},
            then=[{"code": "hr.sterile_supplies", "kind": "consider", "text": "Offer sterile supplies."}],
            citations=[{"key": "S01", "locator": "p.9"}],
            examples={
                "fires": [{"intake": {"substance_use": {"opioids": ["fentanyl"], "route": "injection"}}}],
                "does_not_fire": [{"intake": {}}],
            },
        ),
        rule("OUD-TST-012"),
    ]
    a, b = _packs(tmp_path, old, new)
    d = diff_packs(load_rulepack(a), load_rulepack(b))
    assert d.added == ["OUD-TST-012"] and d.removed == ["OUD-TST-011"]
    (c,) = d.changed
    assert c.rule_id == "OUD-TST-010" and c.version_bumped
    assert c.conditions_added == ["injects is true"] and c.conditions_removed == []
    assert c.actions_added == ['hr.sterile_supplies kind=consider "Offer sterile supplies."']
    assert c.actions_removed == ['hr.sterile_supplies kind=recommend "Offer sterile supplies."']
    assert c.citations_added == ["S01 (p.9)"] and c.citations_removed == ["S01 (p.1)"]
    assert c.fields_changed == ["examples"]
    assert d.problems() == []
    text = format_diff(d)
    for line in (
        "+ OUD-TST-012",
        "- OUD-TST-011",
        "~ OUD-TST-010 (v1 -> v2)",
        "condition + injects is true",
        "citation - S01 (p.1)",
        "version-bump guard: ok",
    ):
        assert line in text, text


def test_a_changed_rule_that_kept_its_version_is_refused(tmp_path: Path):
    a, b = _packs(tmp_path, [_extra()], [_extra(title="Sterile supplies for people who use fentanyl")])
    d = diff_packs(load_rulepack(a), load_rulepack(b))
    assert d.changed_without_version_bump == ["OUD-TST-010"]
    assert d.changed[0].fields_changed == ["title"]
    assert d.problems() == ["OUD-TST-010 changed but kept version 1 (bump `version` in its rule file)"]
    result = CLI.invoke(app, ["rules", "diff", str(a), str(b)])
    assert result.exit_code == 1
    assert "~ OUD-TST-010 (v1, NOT BUMPED)" in result.output
    assert "REFUSED: OUD-TST-010 changed but kept version 1" in result.output


def test_a_changed_pack_that_kept_its_version_is_refused(tmp_path: Path):
    a, b = _packs(
        tmp_path,
        [_extra()],
        [_extra(version=2, rationale="A rule reworded by the diff tests.")],
        new_version=PACK_VERSION,
    )
    old = load_rulepack(a)
    new = load_rulepack(b)
    assert new.version == old.version
    d = diff_packs(old, new)
    assert d.problems() == [f"the pack changed but rules/pack.yaml still says {new.version} (bump `version`)"]
    result = CLI.invoke(app, ["rules", "diff", str(a), str(b), "--format", "json"])
    assert result.exit_code == 1
    body = json.loads(result.output)
    assert body["changed"][0]["fields_changed"] == ["rationale"] and body["problems"]


def test_codes_and_citations_registry_changes_count_as_changes(tmp_path: Path):
    a, b = _packs(tmp_path, [_extra()], [_extra()], new_version=PACK_VERSION)
    codes = yaml.safe_load((b / "codes.yaml").read_text())
    codes["hr.naloxone"]["text"] = "Naloxone kit, reworded."
    (b / "codes.yaml").write_text(yaml.safe_dump(codes))
    d = diff_packs(load_rulepack(a), load_rulepack(b))
    assert d.codes_changed == ["hr.naloxone changed"] and d.changed == []
    assert d.problems()  # the pack's version was not bumped


def test_an_unchanged_pack_diffs_clean_and_the_summary_is_short(tmp_path: Path):
    a, b = _packs(tmp_path, [_extra()], [_extra()], new_version=PACK_VERSION)
    result = CLI.invoke(app, ["rules", "diff", str(a), str(b), "--summary"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"rules diff: carepath-oud {PACK_VERSION} -> carepath-oud {PACK_VERSION}",
        "  0 added, 0 removed, 0 changed; 0 code and 0 citation registry changes",
        "version-bump guard: ok",
    ]


def test_the_working_pack_passes_the_guard_against_the_last_release():
    """What CI runs: the newest frozen release in releases/rules against rules/."""
    releases = sorted(
        (ROOT / "releases" / "rules").iterdir(), key=lambda p: [int(x) for x in p.name.split(".")]
    )
    assert releases, "releases/rules holds no released pack"
    result = CLI.invoke(app, ["rules", "diff", str(releases[-1]), str(ROOT / "rules"), "--summary"])
    assert result.exit_code == 0, result.output


# --- impact -------------------------------------------------------------------------------------


def _intake_files(tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "intakes"
    folder.mkdir()
    (folder / "a-fentanyl.json").write_text(json.dumps(ON_FENTANYL))
    (folder / "b-heroin.json").write_text(json.dumps(ON_HEROIN))
    ndjson = tmp_path / "more.ndjson"
    ndjson.write_text(json.dumps(ON_HEROIN) + "\n\n" + json.dumps(ON_FENTANYL) + "\n")
    return folder, ndjson


def test_impact_reports_wording_and_rule_id_changes_not_only_codes(tmp_path: Path):
    old = [_extra(), rule("OUD-TST-011", then=[{"code": "hr.overdose_education", "kind": "recommend"}])]
    new = [
        _extra(
            version=2,
            then=[{"code": "hr.sterile_supplies", "kind": "recommend", "text": "Sterile kits, every visit."}],
        ),
        rule("OUD-TST-012", then=[{"code": "hr.overdose_education", "kind": "recommend"}]),
    ]
    a, b = _packs(tmp_path, old, new)
    folder, ndjson = _intake_files(tmp_path)
    result = CLI.invoke(
        app, ["rules", "impact", str(a), str(b), "--intakes", str(folder), "--intakes", str(ndjson)]
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert "4 intakes, 4 with a changed plan (100.0%), 0 refused by the new pack" in out
    assert f"{folder / 'a-fentanyl.json'} (id P-7):" in out
    assert f"{ndjson} line 3 (id P-7):" in out  # the blank line 2 is not an intake
    assert f"{ndjson} line 1:" in out
    assert "wording        hr.sterile_supplies: Offer sterile supplies. -> Sterile kits, every visit." in out
    assert re.search(r"rule_ids\s+hr.overdose_education: .*OUD-TST-011.* -> .*OUD-TST-012", out)
    assert "intakes by kind of change: wording 2, rule_ids 4" in out


def test_impact_reports_level_code_alert_and_recommendation_changes(tmp_path: Path):
    old = [_extra()]
    new = [
        _extra(
            version=2,
            phase="level_of_care",
            then=[
                {"code": "loc.intensive_outpatient", "effect": "floor"},
                {"code": "hr.sterile_supplies", "kind": "consider", "text": "Offer sterile supplies."},
                {"code": "alert.high_overdose_risk", "severity": "urgent"},
                {"code": "aft.peer_support", "kind": "recommend"},
            ],
        )
    ]
    a, b = _packs(tmp_path, old, new)
    report = impact(
        Engine(load_rulepack(a), "reference"),
        Engine(load_rulepack(b), "reference"),
        [("fentanyl", _parse(ON_FENTANYL)), ("heroin", _parse(ON_HEROIN))],
    )
    assert [ii.label for ii in report.changed] == ["fentanyl"]
    kinds = {(c.kind, c.code, c.before, c.after) for c in report.changed[0].changes}
    assert ("level", "level_of_care", "loc.outpatient", "loc.intensive_outpatient") in kinds
    assert ("recommendation", "hr.sterile_supplies", "recommend", "consider") in kinds
    assert ("alert", "alert.high_overdose_risk", "", "urgent") in kinds
    assert ("code", "aft.peer_support", "", "recommend") in kinds
    assert report.by_kind() == {"level": 1, "code": 1, "alert": 1, "recommendation": 1}
    heading = f"rules impact: carepath-oud {PACK_VERSION} -> carepath-oud 2099.1.0"
    assert format_impact(report).startswith(heading)


def test_impact_names_bare_intakes_from_1_and_lists_refusals(tmp_path: Path):
    a, b = _packs(tmp_path, [_extra()], [_extra(version=2, then=[{"code": "hr.naloxone", "kind": "avoid"}])])
    report = impact(
        Engine(load_rulepack(a), "reference"),
        Engine(load_rulepack(b), "reference"),
        [_parse(ON_HEROIN), _parse(ON_FENTANYL)],
    )
    assert report.refused and report.refused[0][0] == "#2"
    assert "naloxone" in report.refused[0][1]
    assert report.to_dict()["refused"][0]["intake"] == "#2"
    assert "REFUSED #2:" in format_impact(report)


def test_impact_html_has_charts_tables_and_escapes_labels(tmp_path: Path):
    a, b = _packs(
        tmp_path, [_extra()], [_extra(version=2, then=[{"code": "hr.sterile_supplies", "kind": "consider"}])]
    )
    odd = dict(ON_FENTANYL, patient={"age": 30, "id": "<script>x</script>"})
    report = impact(
        Engine(load_rulepack(a), "reference"),
        Engine(load_rulepack(b), "reference"),
        [("<b>file</b>.json", _parse(odd))],
    )
    html = render_impact_html(report)
    assert html.count("<svg") == 2 and "<rect" in html
    assert "Intakes by kind of change" in html and "Codes changed most often" in html
    assert "<script>" not in html and "&lt;b&gt;file&lt;/b&gt;.json" in html
    assert "recommend" in html and "consider" in html
    result = CLI.invoke(
        app,
        [
            "rules",
            "impact",
            str(a),
            str(b),
            "--synth",
            "30",
            "-f",
            "html",
            "-o",
            str(tmp_path / "impact.html"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "<svg" in (tmp_path / "impact.html").read_text()


def test_impact_on_synthetic_intakes_as_json(tmp_path: Path):
    a, b = _packs(
        tmp_path, [_extra()], [_extra(version=2, then=[{"code": "hr.sterile_supplies", "kind": "consider"}])]
    )
    result = CLI.invoke(
        app, ["rules", "impact", str(a), str(b), "--synth", "200", "--seed", "4", "-f", "json"]
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["intakes"] == 200 and 0 < body["changed"] < 200
    assert body["by_kind"] == {"recommendation": body["changed"]}
    assert body["changes"][0]["intake"].startswith("synth seed 4 #")
    assert "(id synth-4-" in body["changes"][0]["intake"]


def test_impact_without_intakes_or_with_an_invalid_one_exits_2(tmp_path: Path):
    a, b = _packs(tmp_path, [_extra()], [_extra()])
    assert CLI.invoke(app, ["rules", "impact", str(a), str(b)]).exit_code == 2
    bad = tmp_path / "bad.ndjson"
    bad.write_text(json.dumps(ON_HEROIN) + "\n" + json.dumps({"patient": {"age": 3}}) + "\n")
    result = CLI.invoke(app, ["rules", "impact", str(a), str(b), "--intakes", str(bad)])
    assert result.exit_code == 2
    assert f"{bad} line 2: assessment_date" in result.output
    assert (
        CLI.invoke(app, ["rules", "impact", str(a), str(b), "--intakes", str(tmp_path / "nope")]).exit_code
        == 2
    )


def _parse(data: dict[str, Any]):
    from carepath.engine import parse_intake_obj

    return parse_intake_obj(data)


# --- rules test and release ---------------------------------------------------------------------


def test_rules_test_lists_each_failing_example_on_both_engines(tmp_path: Path):
    wrong = _extra(
        examples={
            "fires": [{"intake": {"substance_use": {"opioids": ["heroin"]}}, "note": "heroin"}],
            "does_not_fire": [{"intake": {"substance_use": {"opioids": ["fentanyl"]}}}],
        }
    )
    root = make_pack(tmp_path, {"50-x.yaml": [wrong]})
    result = CLI.invoke(app, ["rules", "test", "--rules-dir", str(root)])
    assert result.exit_code == 1
    for engine in ("reference", "durable"):
        assert (
            f"FAIL [{engine}] OUD-TST-010 example fires[1] (heroin): expected to fire; it did not"
            in result.output
        )
        assert (
            f"FAIL [{engine}] OUD-TST-010 example does_not_fire[1]: expected to not fire; it fired"
            in result.output
        )
    assert result.output.splitlines()[-1] == "4 passed, 4 failed"


def test_rules_test_reports_an_invalid_example_and_an_empty_pack(tmp_path: Path):
    bad = _extra(examples={"fires": [{"intake": {"patient": {"age": 5}}}], "does_not_fire": [{"intake": {}}]})
    result = CLI.invoke(
        app, ["rules", "test", "--rules-dir", str(make_pack(tmp_path / "a", {"50-x.yaml": [bad]}))]
    )
    assert result.exit_code == 1 and "invalid example intake: patient.age" in result.output
    empty = make_pack(tmp_path / "b", {"00-base.yaml": [dict(r, status="draft") for r in BASE_RULES]})
    result = CLI.invoke(app, ["rules", "test", "--rules-dir", str(empty)])
    assert result.exit_code == 1 and "has no active rules" in result.output


def test_rules_test_passes_on_the_shipped_pack():
    result = CLI.invoke(app, ["rules", "test"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith(" passed, 0 failed")


def test_release_freezes_the_pack_once(tmp_path: Path):
    root = make_pack(tmp_path / "src", {})
    into = tmp_path / "releases"
    result = CLI.invoke(app, ["rules", "release", "--rules-dir", str(root), "--into", str(into)])
    assert result.exit_code == 0, result.output
    frozen = into / load_rulepack(root).version
    assert load_rulepack(frozen).sha256 == load_rulepack(root).sha256
    again = CLI.invoke(app, ["rules", "release", "--rules-dir", str(root), "--into", str(into)])
    assert again.exit_code == 0 and "already released" in again.output
    (root / "pack" / "50-x.yaml").write_text(yaml.safe_dump({"rules": [_extra()]}))
    changed = CLI.invoke(app, ["rules", "release", "--rules-dir", str(root), "--into", str(into)])
    assert changed.exit_code == 1 and "bump the version" in changed.output


def test_release_refuses_a_pack_that_does_not_lint_clean(tmp_path: Path):
    root = make_pack(tmp_path, {"00-base.yaml": BASE_RULES[:1]})  # no level of care
    result = CLI.invoke(app, ["rules", "release", "--rules-dir", str(root), "--into", str(tmp_path / "r")])
    assert result.exit_code == 1 and "baseline level of care" in result.output
    assert not (tmp_path / "r").exists()


def test_released_packs_are_whole_copies():
    for folder in (ROOT / "releases" / "rules").iterdir():
        pack = load_rulepack(folder)
        assert pack.version == folder.name
        assert shutil.which("true") or True  # (copies hold pack.yaml, citations, codes and pack/)
        assert {p.name for p in folder.iterdir()} >= {"pack.yaml", "citations.yaml", "codes.yaml", "pack"}


def test_synthetic_intakes_feed_impact_between_two_real_releases():
    """The README's impact figure, on a small sample: 2026.11.1 -> 2026.12.0 changes some plans."""
    old = Engine(load_rulepack(ROOT / "releases" / "rules" / "2026.11.1"), "reference")
    new = Engine(load_rulepack(ROOT / "releases" / "rules" / "2026.12.0"), "reference")
    report = impact(old, new, list(synth_intakes(150, seed=1)))
    assert report.intakes == 150 and report.refused == []
    assert report.changed, "the two releases differ for some synthetic intakes"


def test_conditions_read_in_one_line():
    from carepath.engine.governance import describe_condition
    from carepath.engine.rulespec import parse_condition

    cond = {
        "any": [
            {"fact": "cows_score", "at_least": 8},
            {"not": {"all": [FENTANYL, {"fact": "injects", "known": False}]}},
        ]
    }
    assert describe_condition(parse_condition(cond)) == (
        "any(cows_score >= 8, not(all(uses_fentanyl is true, injects is unknown)))"
    )
    assert describe_condition(parse_condition("always")) == "always"


def test_diff_sees_draft_rules_and_the_citation_registry(tmp_path: Path):
    a, b = _packs(
        tmp_path, [_extra(status="draft")], [_extra(status="draft", version=2, title="A draft, retitled")]
    )
    cites = yaml.safe_load((b / "citations.yaml").read_text())
    cites["S99"] = {"title": "A new source", "short": "New", "year": "2026"}
    (b / "citations.yaml").write_text(yaml.safe_dump(cites))
    d = diff_packs(load_rulepack(a), load_rulepack(b))
    assert [c.rule_id for c in d.changed] == ["OUD-TST-010"] and d.changed[0].fields_changed == ["title"]
    assert d.citations_changed == ["S99 added"] and d.problems() == []


def test_long_wordings_are_shortened_to_what_differs():
    from carepath.engine.governance import Change

    common = "Placement matches the highest-risk dimension to the least intensive setting. " * 2
    change = Change("wording", "loc.outpatient", common + "Old ending.", common + "New ending, longer.")
    text = str(change)
    assert "Old ending." in text and "New ending, longer." in text and "..." in text
    assert len(text) < len(change.before) + len(change.after)
    assert str(Change("wording", "x", "short", "also short")) == "wording        x: short -> also short"


def test_an_intake_the_old_pack_refused_shows_as_a_new_plan(tmp_path: Path):
    a, b = _packs(tmp_path, [_extra(then=[{"code": "hr.naloxone", "kind": "avoid"}])], [_extra(version=2)])
    report = impact(
        Engine(load_rulepack(a), "reference"),
        Engine(load_rulepack(b), "reference"),
        [("f", _parse(ON_FENTANYL))] * 3,
    )
    assert len(report.changed) == 3 and report.changed[0].changes[0].before.startswith("refused: ")
    text = format_impact(report, limit=1)
    assert "... and 2 more intakes" in text


def test_the_weightiest_changes_are_listed_first(tmp_path: Path):
    from carepath.engine.governance import Change, ImpactReport, IntakeImpact

    report = ImpactReport(
        "a 1",
        "a 2",
        3,
        [
            IntakeImpact("worded", [Change("wording", "x", "a", "b")]),
            IntakeImpact(
                "moved", [Change("rule_ids", "x", "R1", "R2"), Change("level", "level_of_care", "a", "b")]
            ),
            IntakeImpact("alerted", [Change("alert", "alert.x", "", "urgent")]),
        ],
    )
    assert [ii.label for ii in report.ranked()] == ["moved", "alerted", "worded"]
    text = format_impact(report)
    assert text.index("moved:") < text.index("alerted:") < text.index("worded:")
