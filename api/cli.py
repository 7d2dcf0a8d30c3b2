"""carepath command line (contract §4). Exit codes: 0 success, 2 invalid input, 1 anything else.

Patient data never reaches stderr: invalid input is reported by field path and expectation,
internal errors by their class only.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from carepath.api.cli_service import register_service_commands
from carepath.engine import CarePlan, Engine, IntakeError, RulePackError, load_rulepack, parse_intake_json
from carepath.engine.errors import CarepathError, FieldProblem
from carepath.engine.intake import MAX_INTAKE_BYTES

# Plain help (rich_markup_mode=None): Typer's rich panels print a "<bool>" type for every flag.
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="carepath: draft OUD care pathways for clinicians.",
)
rules_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Rule governance: lint, test, diff, impact, release, compile.",
)
app.add_typer(rules_app, name="rules")


class Format(StrEnum):
    json = "json"
    html = "html"
    pdf = "pdf"
    fhir = "fhir"


class Audience(StrEnum):
    clinician = "clinician"
    patient = "patient"


class Runner(StrEnum):
    durable = "durable"
    reference = "reference"


def _fail(code: int, message: str) -> NoReturn:
    typer.echo(f"carepath: {message}", err=True)
    raise typer.Exit(code)


def _invalid(problems: list[FieldProblem]) -> NoReturn:
    typer.echo("carepath: invalid intake", err=True)
    for p in problems:
        typer.echo(f"  {p.field}: {p.message}", err=True)
    raise typer.Exit(2)


def read_intake_bytes(path: str) -> bytes:
    if path == "-":
        raw = sys.stdin.buffer.read(MAX_INTAKE_BYTES + 1)
    else:
        file = Path(path)
        if not file.is_file():
            _fail(2, f"intake file not found: {path}")
        if file.stat().st_size > MAX_INTAKE_BYTES:
            _invalid([FieldProblem("(intake)", f"is too large: at most {MAX_INTAKE_BYTES} bytes allowed")])
        raw = file.read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        _invalid([FieldProblem("(intake)", "is not UTF-8 text: expected a JSON object")])
    return raw


def generated_at(option: str | None) -> datetime:
    """The clock lives here, in the shell. SOURCE_DATE_EPOCH or --generated-at pin it."""
    if option:
        return datetime.fromisoformat(option).astimezone(UTC)
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        return datetime.fromtimestamp(int(epoch), tz=UTC)
    return datetime.now(UTC).replace(microsecond=0)


def build_engine(runner: Runner = Runner.durable, rules_dir: Path | None = None) -> Engine:
    """The engine on a pack that loads and lints clean; otherwise one line on stderr, exit 1."""
    from carepath.engine.governance import require_clean

    try:
        pack = load_rulepack(rules_dir)
        require_clean(pack)
        return Engine(pack, runner.value)
    except RulePackError as exc:
        _fail(1, f"rule pack refused: {exc}")


def render(
    plan: CarePlan,
    fmt: Format,
    audience: Audience,
    language: str | None,
    patient: Any = None,
    pack: Any = None,
    intake: Any = None,
) -> bytes:
    if fmt is Format.json:
        return (plan.model_dump_json(indent=2) + "\n").encode()
    if fmt is Format.html:
        from carepath.reports import render_html

        return render_html(
            plan, audience=audience.value, language=language, patient=patient, pack=pack, intake=intake
        ).encode()
    if fmt is Format.pdf:
        from carepath.reports.pdf import render_pdf

        return render_pdf(
            plan, audience=audience.value, language=language, patient=patient, pack=pack, intake=intake
        )
    from carepath.api.fhir import care_plan_bundle

    return (json.dumps(care_plan_bundle(plan), indent=2) + "\n").encode()


@app.command()
def evaluate(
    intake: Annotated[str, typer.Argument(help="Intake JSON file (contract §1), or - for stdin.")],
    format: Annotated[Format, typer.Option("--format", "-f")] = Format.json,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write here, not stdout.")] = None,
    audience: Annotated[
        Audience, typer.Option(help="html/pdf: clinician draft or patient summary.")
    ] = Audience.clinician,
    engine: Annotated[
        Runner, typer.Option(help="durable (default) or the reference interpreter.")
    ] = Runner.durable,
    generated: Annotated[
        str | None, typer.Option("--generated-at", help="ISO timestamp to stamp instead of now.")
    ] = None,
    rules_dir: Annotated[
        Path | None, typer.Option(help="Rule pack folder (default: packaged rules/).")
    ] = None,
) -> None:
    """Evaluate one intake and print the draft care plan."""
    raw = read_intake_bytes(intake)
    try:
        parsed = parse_intake_json(raw)
    except IntakeError as exc:
        _invalid(exc.problems)
    runner = build_engine(engine, rules_dir)
    try:
        plan = runner.evaluate(parsed, generated_at(generated))
        patient = _patient(parsed) if format in (Format.html, Format.pdf) else None
        body = render(plan, format, audience, parsed.preferences.language, patient, runner.pack, parsed)
    except CarepathError as exc:
        _fail(1, f"refused: {exc}")
    except Exception as exc:  # fail closed, never a traceback with patient data
        _fail(1, f"internal error ({type(exc).__name__}); no plan was produced")
    _write(body, output)


def _patient(parsed: Any) -> Any:
    """Identifiers for the report header (the plan carries none); never logged."""
    from carepath.reports import patient_from_intake

    return patient_from_intake(parsed)


def _write(body: bytes, output: Path | None) -> None:
    if output is None:
        sys.stdout.buffer.write(body)
        sys.stdout.flush()
        return
    tmp = output.with_name(output.name + ".part")
    tmp.write_bytes(body)
    tmp.replace(output)


@app.command()
def batch(
    input: Annotated[Path, typer.Argument(help="NDJSON: one intake per line.")],
    output: Annotated[Path, typer.Option("-o", "--output")],
    workers: Annotated[int, typer.Option(help="Worker processes (default: all cores).")] = 0,
    generated: Annotated[str | None, typer.Option("--generated-at")] = None,
    rules_dir: Annotated[
        Path | None, typer.Option(help="Rule pack folder (default: packaged rules/).")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Carry on an interrupted run from OUTPUT.part.")
    ] = False,
    cluster: Annotated[
        str | None,
        typer.Option(
            help="Run on Dask distributed: 'local' (a LocalCluster of --workers processes here) "
            "or a scheduler address such as tcp://scheduler:8786."
        ),
    ] = None,
    engine: Annotated[
        Runner, typer.Option(help="durable (default) or the reference interpreter.")
    ] = Runner.durable,
) -> None:
    """Evaluate many intakes on all cores (or a Dask cluster); one result line per input line,
    in order. Ctrl-C / SIGTERM keep OUTPUT.part; --resume continues it."""
    from carepath.api.batch import BatchInterrupted, ResumeRefused, run_batch

    if not input.is_file():
        _fail(2, f"input file not found: {input}")
    stamp = None if resume and not generated else generated_at(generated)
    try:
        stats = run_batch(
            input,
            output,
            workers or (os.cpu_count() or 1),
            stamp,
            rules_dir,
            resume=resume,
            cluster=cluster,
            runner=engine.value,
        )
    except RulePackError as exc:
        _fail(1, f"rule pack refused: {exc}")
    except ResumeRefused as exc:
        _fail(2, f"cannot resume: {exc}; run without --resume to start again")
    except BatchInterrupted as exc:
        typer.echo(
            f"carepath: interrupted after {exc.done} of {exc.total} intakes; partial output kept in "
            f"{exc.partial}; run the same command with --resume to continue",
            err=True,
        )
        raise typer.Exit(128 + exc.signum) from None
    except Exception as exc:  # fail closed, never a traceback with patient data
        _fail(1, f"batch failed ({type(exc).__name__}); partial output (if any) kept in {output}.part")
    typer.echo(f"{stats['ok']} plans, {stats['invalid']} invalid, {stats['failed']} failed", err=True)
    if stats["failed"]:
        raise typer.Exit(1)


class OutputFormat(StrEnum):
    text = "text"
    json = "json"
    html = "html"


RELEASES_DIR = Path("releases/rules")
"""Frozen copies of released packs (one folder per version), kept in the repository so that
`carepath rules diff` against the last release works on any clone (CI runs it)."""


@rules_app.command("lint")
def rules_lint(
    rules_dir: Annotated[
        Path | None, typer.Option(help="Rule pack folder (default: packaged rules/).")
    ] = None,
    today: Annotated[str | None, typer.Option(help="Date to judge review dates by (default today).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors and warnings.")] = False,
    population: Annotated[
        int, typer.Option(help="Also run N synthetic intakes and list rules none of them fires.")
    ] = 0,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic population.")] = 1,
    samples: Annotated[
        int,
        typer.Option(
            help="Intakes sampled over the whole contract to find rules that fire together and word a "
            "treatment differently without a declared precedence (0 skips the search)."
        ),
    ] = 2000,
) -> None:
    """Check the pack: errors refuse it (exit 1; the service will not start on it), warnings and
    information are for the clinical lead."""
    from carepath.engine.governance import lint

    pack = _pack(rules_dir)
    when = date.fromisoformat(today) if today else date.today()
    findings = lint(pack, when, population, seed, cofiring_samples=samples)
    for f in findings:
        if not quiet or f.level != "info":
            typer.echo(str(f))
    errors = sum(f.level == "error" for f in findings)
    warnings = sum(f.level == "warning" for f in findings)
    typer.echo(
        f"{pack.id} {pack.version}: {len(pack.rules)} active rules, {errors} errors, {warnings} warnings, "
        f"sha256 {pack.sha256}"
    )
    if errors:
        raise typer.Exit(1)


@rules_app.command("test")
def rules_test(
    rules_dir: Annotated[
        Path | None, typer.Option(help="Rule pack folder (default: packaged rules/).")
    ] = None,
) -> None:
    """Run every rule's own fires / does_not_fire examples, on both engines."""
    from carepath.engine._durable import DurableRunner
    from carepath.engine.governance import run_examples

    pack = _pack(rules_dir)
    if not pack.rules:
        _fail(1, f"rule pack refused: {pack.id} {pack.version} has no active rules")
    failed = total = 0
    for name, runner in (("reference", None), ("durable", DurableRunner(pack))):
        for r in run_examples(pack, runner):
            total += 1
            if not r.ok:
                failed += 1
                want = "fire" if r.expected else "not fire"
                got = r.error or ("it did not" if r.expected else "it fired")
                typer.echo(f"FAIL [{name}] {r.rule_id} example {r.label}: expected to {want}; {got}")
    typer.echo(f"{total - failed} passed, {failed} failed")
    if failed:
        raise typer.Exit(1)


@rules_app.command("diff")
def rules_diff(
    old: Annotated[Path, typer.Argument(help="The earlier pack folder (e.g. releases/rules/2026.12.0).")],
    new: Annotated[Path, typer.Argument(help="The later pack folder (e.g. rules).")],
    format: Annotated[OutputFormat, typer.Option("--format", "-f", help="text or json.")] = OutputFormat.text,
    summary: Annotated[bool, typer.Option("--summary", help="Counts and refusals only.")] = False,
) -> None:
    """Rules added, removed and changed (conditions, actions, citations) between two packs.
    Exit 1 when a changed rule kept its version or the pack's version was not bumped."""
    from carepath.engine.governance import diff_packs, format_diff

    d = diff_packs(_pack(old), _pack(new))
    if format is OutputFormat.json:
        typer.echo(json.dumps(d.to_dict(), indent=2))
    else:
        typer.echo(format_diff(d, summary=summary))
    if d.problems():
        raise typer.Exit(1)


@rules_app.command("impact")
def rules_impact(
    old: Annotated[Path, typer.Argument(help="The earlier pack folder.")],
    new: Annotated[Path, typer.Argument(help="The later pack folder.")],
    intakes: Annotated[
        list[Path] | None,
        typer.Option(help="A folder of intake JSON files or an NDJSON file (repeatable)."),
    ] = None,
    synth: Annotated[int, typer.Option(help="Add N synthetic intakes (carepath synth).")] = 0,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic intakes.")] = 1,
    format: Annotated[OutputFormat, typer.Option("--format", "-f")] = OutputFormat.text,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write here, not stdout.")] = None,
    limit: Annotated[int, typer.Option(help="text: list at most this many changed intakes.")] = 50,
) -> None:
    """Which intakes would get a different plan under the new pack, and how: level of care,
    codes, alerts, recommend/consider/avoid, wording and rule ids. Intakes are named by file
    (and line) and patient id."""
    from carepath.engine.governance import format_impact, impact

    cases = [case for source in intakes or [] for case in _load_intakes(source)]
    if synth:
        from carepath.engine.synth import synth_intakes

        cases += [
            (f"synth seed {seed} #{n} (id {i.patient.id})", i)
            for n, i in enumerate(synth_intakes(synth, seed), 1)
        ]
    if not cases:
        _fail(2, "no intakes: give --intakes PATH and/or --synth N")
    report = impact(Engine(_pack(old), "reference"), Engine(_pack(new), "reference"), cases)
    if format is OutputFormat.json:
        body = json.dumps(report.to_dict(), indent=2) + "\n"
    elif format is OutputFormat.html:
        from carepath.reports.render import render_impact_html

        body = render_impact_html(report)
    else:
        body = format_impact(report, limit) + "\n"
    _write(body.encode(), output)


@rules_app.command("release")
def rules_release(
    rules_dir: Annotated[
        Path | None, typer.Option(help="Rule pack folder (default: packaged rules/).")
    ] = None,
    into: Annotated[Path, typer.Option(help="Where released packs are kept.")] = RELEASES_DIR,
) -> None:
    """Freeze the pack as released: copy it to releases/rules/<version>/ (commit that folder).
    CI diffs the working pack against the newest release there."""
    import shutil

    from carepath.engine.governance import require_clean

    pack = _pack(rules_dir)
    try:
        require_clean(pack)
    except RulePackError as exc:
        _fail(1, f"rule pack refused: {exc}")
    target = into / pack.version
    if target.exists():
        if load_rulepack(target).sha256 == pack.sha256:
            typer.echo(f"{pack.id} {pack.version} is already released at {target}")
            return
        _fail(1, f"{target} holds a different pack {pack.version}: bump the version in pack.yaml")
    source = Path(pack.source_dir)
    target.mkdir(parents=True)
    for path in sorted(source.rglob("*.yaml")):
        dest = target / path.relative_to(source)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
    typer.echo(f"released {pack.id} {pack.version} to {target} (sha256 {pack.sha256})")


@rules_app.command("compile")
def rules_compile(
    rules_dir: Annotated[
        Path | None, typer.Option(help="Rule pack folder (default: packaged rules/).")
    ] = None,
) -> None:
    """Print the durable_rules ruleset compiled from the pack (deterministic JSON)."""
    from carepath.engine.compile import compile_pack

    typer.echo(json.dumps(compile_pack(_pack(rules_dir)), indent=1, sort_keys=True))


@app.command("synth")
def synth_command(
    n: Annotated[int, typer.Argument(help="How many intakes.", min=1, max=10_000_000)],
    seed: Annotated[int, typer.Option(help="Same seed, same intakes.")] = 1,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="NDJSON file (default stdout).")
    ] = None,
) -> None:
    """Write N synthetic, clinically coherent intakes as NDJSON (for batch, impact, benchmarks)."""
    from carepath.engine.synth import synth_dicts

    lines = (json.dumps(d, separators=(",", ":")) + "\n" for d in synth_dicts(n, seed))
    if output is None:
        for line in lines:
            sys.stdout.write(line)
        sys.stdout.flush()
        return
    tmp = output.with_name(output.name + ".part")
    with tmp.open("w", encoding="utf-8") as out:
        out.writelines(lines)
    tmp.replace(output)
    typer.echo(f"{n} intakes (seed {seed}) -> {output}", err=True)


@rules_app.command("fhir")
def rules_fhir(
    rules_dir: Annotated[Path | None, typer.Option()] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write here, not stdout.")] = None,
) -> None:
    """Export the pack as FHIR knowledge artifacts (Library, PlanDefinition per rule, ActivityDefinition
    per code) with the HTI-1 decision-support source attributes."""
    from carepath.api.fhir import validate_resource
    from carepath.api.knowledge import knowledge_bundle

    bundle = knowledge_bundle(_pack(rules_dir))
    for entry in bundle["entry"]:
        validate_resource(entry["resource"])
    _write((json.dumps(bundle, indent=2) + "\n").encode(), output)


@rules_app.command("feedback")
def rules_feedback(
    org: Annotated[str | None, typer.Option(help="Organisation slug (default: every organisation).")] = None,
    since: Annotated[str | None, typer.Option("--from", help="From this day (YYYY-MM-DD, UTC).")] = None,
    until: Annotated[str | None, typer.Option("--to", help="To this day, inclusive.")] = None,
    bucket: Annotated[str, typer.Option(help="month | week | all")] = "month",
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
) -> None:
    """How clinicians answer CDS cards: per rule and period, cards shown, accepted, overridden, the
    override rate and the reasons given (from CDS Hooks feedback; no patient data)."""
    from datetime import time, timedelta

    from carepath.api.cli_service import _database

    if bucket not in ("month", "week", "all"):
        _fail(2, "--bucket must be month, week or all")
    try:
        start = datetime.combine(date.fromisoformat(since), time(0), tzinfo=UTC) if since else None
        end = (
            datetime.combine(date.fromisoformat(until) + timedelta(days=1), time(0), tzinfo=UTC)
            if until
            else None
        )
    except ValueError:
        _fail(2, "--from and --to take dates like 2026-12-01")
    db = _database()
    try:
        with db.transaction(readonly=True) as tx:
            org_id = None
            if org is not None:
                found = tx.org_by_slug(org)
                if found is None:
                    _fail(2, f"no organisation '{org}'")
                org_id = found.id
            stats = tx.feedback_stats(org_id, start, end, bucket)
    finally:
        db.dispose()
    if as_json:
        rows = [{**s.__dict__, "override_rate": s.override_rate} for s in stats]
        typer.echo(json.dumps(rows, indent=2))
        return
    row = "{:<10} {:<14} {:>6} {:>9} {:>11} {:>6}  {}"
    typer.echo(row.format("period", "rule", "cards", "accepted", "overridden", "rate", "reasons"))
    for s in stats:
        rate = f"{s.override_rate:.0%}" if s.override_rate is not None else "-"
        reasons = ", ".join(f"{k} ({v})" for k, v in sorted(s.reasons.items(), key=lambda kv: -kv[1]))
        typer.echo(row.format(s.period, s.rule_id, s.cards, s.accepted, s.overridden, rate, reasons))
    if not stats:
        typer.echo("no CDS cards or feedback in this period")


def _pack(rules_dir: Path | None) -> Any:
    try:
        return load_rulepack(rules_dir)
    except RulePackError as exc:
        _fail(1, f"rule pack refused: {exc}")


def _load_intakes(source: Path) -> list[tuple[str, Any]]:
    """(label, intake) pairs; a label names the file (and line) and the patient id if any."""
    if source.is_dir():
        texts = [(str(p), p.read_text(encoding="utf-8")) for p in sorted(source.glob("*.json"))]
    elif source.is_file():
        texts = [
            (f"{source} line {n}", line)
            for n, line in enumerate(source.read_text(encoding="utf-8").splitlines(), 1)
            if line.strip()
        ]
    else:
        _fail(2, f"intakes not found: {source}")
    out = []
    for where, text in texts:
        try:
            intake = parse_intake_json(text)
        except IntakeError as exc:
            _invalid([FieldProblem(f"{where}: {p.field}", p.message) for p in exc.problems])
        out.append((where + (f" (id {intake.patient.id})" if intake.patient.id else ""), intake))
    return out


register_service_commands(app)  # serve, users, audit, db (api/cli_service.py)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(1)
