"""rules/ -> RulePack: load, validate, resolve citations, check facts and codes, sha256.

Any defect raises RulePackError naming the file and the rule: a broken pack never runs.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .errors import RulePackError
from .facts import FACTS
from .rulespec import (
    NUMERIC_OPS,
    Cond,
    Rule,
    Test,
    parse_condition,
    referenced_facts,
    referenced_flags,
    walk,
)

YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""yaml.safe_load's loader, in C (libyaml) where available: ~10x faster service start-up."""

__all__ = ["RulePack", "PackRule", "Code", "Citation", "load_rulepack", "default_rules_dir"]

_STEPS = ("today", "during_withdrawal", "after_withdrawal", "maintenance", "aftercare")


@dataclass(frozen=True)
class Citation:
    key: str
    title: str
    short: str
    year: str


@dataclass(frozen=True)
class Code:
    code: str
    label: str
    phase: str
    text: str
    intensity: float | None = None
    asam: str | None = None
    patient_text: str | None = None
    step: str | None = None
    """Where the code stands in the pathway when it starts now (default: by its phase)."""
    text_for: dict[str, str] = field(default_factory=dict)
    """The default wording in one jurisdiction (keys US, UK, DE, CA)."""


@dataclass(frozen=True)
class PackRule:
    rule: Rule
    cond: Cond
    facts: tuple[str, ...]
    flags: tuple[str, ...]
    stratum: int
    id: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", self.rule.id)  # read on every evaluation: a plain attribute


@dataclass(frozen=True)
class RulePack:
    id: str
    version: str
    effective_date: date
    title: str
    sha256: str
    rules: tuple[PackRule, ...]
    inactive: tuple[Rule, ...]
    citations: dict[str, Citation]
    codes: dict[str, Code]
    source_dir: str

    def rule(self, rule_id: str) -> PackRule:
        return self.by_id[rule_id]

    @cached_property
    def by_id(self) -> dict[str, PackRule]:
        return {r.id: r for r in self.rules}

    @cached_property
    def cited(self) -> dict[str, tuple[Any, ...]]:
        """Each rule's citations as plan entries (built once per pack; plan models are frozen)."""
        from .plan import CitationOut

        return {
            r.id: tuple(
                CitationOut(key=c.key, title=self.citations[c.key].title, locator=c.locator)
                for c in r.rule.citations
            )
            for r in self.rules
        }

    @cached_property
    def readers(self) -> dict[str, tuple[int, ...]]:
        """For each fact, the positions (in ``rules``) of the rules that read it."""
        found: dict[str, list[int]] = {}
        for n, r in enumerate(self.rules):
            for name in r.facts:
                found.setdefault(name, []).append(n)
        return {name: tuple(ns) for name, ns in found.items()}

    @cached_property
    def speakers(self) -> dict[str, tuple[PackRule, ...]]:
        """Rules that recommend or consider each code (for "why not")."""
        found: dict[str, list[PackRule]] = {}
        for r in self.rules:
            for t in r.rule.then:
                if t.kind in ("recommend", "consider") and r not in found.get(t.code, []):
                    found.setdefault(t.code, []).append(r)
        return {code: tuple(rules) for code, rules in found.items()}


def default_rules_dir() -> Path:
    env = os.environ.get("CAREPATH_RULES_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "rules"


def load_rulepack(directory: Path | str | None = None) -> RulePack:
    root = Path(directory) if directory else default_rules_dir()
    if not (root / "pack.yaml").is_file():
        raise RulePackError(f"no rule pack at {root}: pack.yaml is missing")
    manifest = _read(root / "pack.yaml")
    citations = _citations(_read(root / "citations.yaml"))
    codes = _codes(_read(root / "codes.yaml"))
    rules, files = _rules(root)
    active = [r for r in rules if r.status == "active"]
    packed = _stratify([_check_in(files[r.id], r, citations, codes) for r in active], files)
    _check_wordings(packed, files)
    return RulePack(
        id=_need(manifest, "id", "pack.yaml"),
        version=str(_need(manifest, "version", "pack.yaml")),
        effective_date=_date(_need(manifest, "effective_date", "pack.yaml")),
        title=str(manifest.get("title", "")),
        sha256=_digest(root),
        rules=tuple(sorted(packed, key=lambda r: r.id)),
        inactive=tuple(r for r in rules if r.status != "active"),
        citations=citations,
        codes=codes,
        source_dir=str(root),
    )


def _read(path: Path) -> Any:
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=YAML_LOADER)
    except FileNotFoundError:
        raise RulePackError(f"{path.name} is missing from the rule pack") from None
    except yaml.YAMLError as exc:
        raise RulePackError(f"{path.name} is not valid YAML: {exc}") from None


def _need(data: Any, key: str, where: str) -> Any:
    if not isinstance(data, dict) or key not in data:
        raise RulePackError(f"{where} needs '{key}'")
    return data[key]


def _date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _citations(data: Any) -> dict[str, Citation]:
    if not isinstance(data, dict):
        raise RulePackError("citations.yaml must map source keys (S01...) to documents")
    out = {}
    for key, doc in data.items():
        if not isinstance(doc, dict) or "title" not in doc:
            raise RulePackError(f"citations.yaml: {key} needs a title")
        out[key] = Citation(key, str(doc["title"]), str(doc.get("short", key)), str(doc.get("year", "")))
    return out


def _codes(data: Any) -> dict[str, Code]:
    if not isinstance(data, dict):
        raise RulePackError("codes.yaml must map codes to their label, phase and text")
    out = {}
    for code, spec in data.items():
        try:
            out[code] = Code(code=code, **spec)
        except TypeError as exc:
            raise RulePackError(f"codes.yaml: {code}: {exc}") from None
        if out[code].step not in (None, *_STEPS):
            raise RulePackError(f"codes.yaml: {code}: step must be one of {_STEPS}")
    return out


def _rules(root: Path) -> tuple[list[Rule], dict[str, str]]:
    """Every rule document, and the file each rule id comes from (for error messages)."""
    found: list[Rule] = []
    seen: dict[str, str] = {}
    files = sorted((root / "pack").glob("*.yaml"))
    if not files:
        raise RulePackError(f"no rule files in {root / 'pack'}")
    for path in files:
        doc = _read(path)
        for raw in _need(doc, "rules", path.name):
            rule = _validate(raw, path.name)
            if rule.id in seen:
                raise RulePackError(f"{path.name}: {rule.id} is already defined in {seen[rule.id]}")
            seen[rule.id] = path.name
            found.append(rule)
    return found, seen


def _validate(raw: Any, where: str) -> Rule:
    rid = raw.get("id", "?") if isinstance(raw, dict) else "?"
    try:
        rule = Rule.model_validate(raw)
        parse_condition(rule.when)
    except (ValidationError, ValueError) as exc:
        raise RulePackError(f"{where}: rule {rid}: {_short(exc)}") from None
    return rule


def _short(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_input=False)
        )
    return str(exc)


def _check_in(where: str, rule: Rule, citations: dict[str, Citation], codes: dict[str, Code]) -> PackRule:
    try:
        return _check(rule, citations, codes)
    except RulePackError as exc:
        raise RulePackError(f"{where}: {exc}") from None


def _check(rule: Rule, citations: dict[str, Citation], codes: dict[str, Code]) -> PackRule:
    cond = parse_condition(rule.when)
    for ref in rule.citations:
        if ref.key not in citations:
            raise RulePackError(f"{rule.id}: citation {ref.key} is not in citations.yaml")
    _check_tests(rule.id, cond)
    for item in rule.then:
        _check_then(rule.id, item.model_dump(), codes)
    if not rule.then and not rule.sets:
        raise RulePackError(f"{rule.id}: a rule must say something ('then') or set a flag")
    facts = tuple(referenced_facts(cond))
    return PackRule(rule, cond, facts, tuple(referenced_flags(cond)), stratum=0)


_PLACEHOLDER = re.compile(r"\{([a-z0-9_]+)\}")


def _check_wordings(rules: list[PackRule], files: dict[str, str]) -> None:
    """What ``forbids`` names must word the same code; placeholders must name facts."""
    speakers: dict[str, set[str]] = {}
    for r in rules:
        for t in r.rule.then:
            if t.kind in ("recommend", "consider", "avoid", "caution"):
                speakers.setdefault(t.code, set()).add(r.id)
    for r in rules:
        where = files.get(r.id, "?")
        for t in r.rule.then:
            unknown = [f for f in t.forbids if f != "default" and f not in speakers.get(t.code, set())]
            if unknown:
                raise RulePackError(
                    f"{where}: {r.id}: forbids {unknown}, which never word {t.code} (or are not active)"
                )
            for text in [t.text or "", t.start_condition or "", *t.text_for.values()]:
                for name in _PLACEHOLDER.findall(text):
                    if name not in FACTS:
                        raise RulePackError(f"{where}: {r.id}: wording names unknown fact {{{name}}}")


def _check_tests(rid: str, cond: Cond) -> None:
    def visit(node: Cond) -> None:
        if isinstance(node, Test):
            _check_test(rid, node)

    walk(cond, visit)


def _check_test(rid: str, t: Test) -> None:
    fact = FACTS.get(t.fact)
    if fact is None:
        raise RulePackError(f"{rid}: unknown fact '{t.fact}' (see engine/facts.py)")
    values = t.value if isinstance(t.value, tuple) else (t.value,)
    if t.op == "known":
        return
    if fact.type == "text":
        raise RulePackError(f"{rid}: {t.fact} is a wording fact; a rule may only test whether it is known")
    if t.op in NUMERIC_OPS and fact.type not in ("int", "number"):
        raise RulePackError(f"{rid}: '{t.op}' needs a numeric fact; {t.fact} is {fact.type}")
    for v in values:
        if fact.type == "bool" and not isinstance(v, bool):
            raise RulePackError(f"{rid}: {t.fact} is true/false, not {v!r}")
        if fact.type == "enum" and v not in fact.values:
            raise RulePackError(f"{rid}: {t.fact} has no value {v!r}; expected one of {fact.values}")
        if fact.type in ("int", "number") and (isinstance(v, bool) or not isinstance(v, int | float)):
            raise RulePackError(f"{rid}: {t.fact} is a number, not {v!r}")


def _check_then(rid: str, item: dict[str, Any], codes: dict[str, Code]) -> None:
    code = codes.get(item["code"])
    if code is None:
        raise RulePackError(f"{rid}: unknown code '{item['code']}' (see rules/codes.yaml)")
    if code.phase == "alerts":
        if item["severity"] is None or item["kind"] is not None:
            raise RulePackError(f"{rid}: alert {code.code} needs a severity and no kind")
    elif code.phase == "level_of_care":
        if item["effect"] is None:
            raise RulePackError(f"{rid}: level of care {code.code} needs effect floor|need|ceiling")
    elif item["kind"] is None or item["effect"] is not None or item["severity"] is not None:
        raise RulePackError(f"{rid}: {code.code} needs a kind (and no severity or effect)")
    elif item["kind"] == "caution" and not (item["text"] or item["text_for"]):
        raise RulePackError(f"{rid}: a caution on {code.code} needs its own text")
    if code.phase in ("alerts", "level_of_care") and (item["start"] or item["forbids"]):
        raise RulePackError(f"{rid}: {code.code} cannot start later or forbid wordings")


def _stratify(rules: list[PackRule], files: dict[str, str]) -> list[PackRule]:
    """Order rules so a flag is set before it is needed; reject unknown flags and cycles."""
    setters: dict[str, list[str]] = {}
    for r in rules:
        for flag in r.rule.sets:
            setters.setdefault(flag, []).append(r.id)
    by_id = {r.id: r for r in rules}
    depth: dict[str, int] = {}

    def level(rid: str, path: tuple[str, ...]) -> int:
        if rid in path:
            steps = [f"{r} ({files.get(r, '?')})" for r in path + (rid,)]
            raise RulePackError(f"flag cycle: {' -> '.join(steps)}")
        if rid not in depth:
            r = by_id[rid]
            deps = []
            for flag in r.flags:
                if flag not in setters:
                    raise RulePackError(
                        f"{files.get(rid, '?')}: {rid}: needs flag '{flag}' that no active rule sets"
                    )
                deps += [level(s, path + (rid,)) + 1 for s in setters[flag]]
            depth[rid] = max(deps, default=0)
        return depth[rid]

    return [PackRule(r.rule, r.cond, r.facts, r.flags, stratum=level(r.id, ())) for r in rules]


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.yaml")):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()
