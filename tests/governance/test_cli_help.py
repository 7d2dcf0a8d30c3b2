"""Every command's --help reads as a person would write it: no '<bool>' type placeholders
(Typer's rich panels print one for every flag), and every command has a one-line summary."""

from __future__ import annotations

from typing import Any

import typer
from typer.testing import CliRunner

from carepath.api.cli import app


def _commands(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for name, cmd in sorted(group.commands.items()):
        if hasattr(cmd, "commands"):  # a group
            found += _commands(cmd, prefix + (name,))
        else:
            found.append(prefix + (name,))
    return found


def test_no_help_page_shows_a_bool_placeholder():
    root = typer.main.get_command(app)
    commands = _commands(root)
    assert ("rules", "lint") in commands and ("synth",) in commands and ("serve",) in commands
    runner = CliRunner()
    for path in commands:
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "120"})
        assert result.exit_code == 0, (path, result.output)
        assert "<bool>" not in result.output, f"carepath {' '.join(path)} --help:\n{result.output}"
        assert "Show this message and exit." in result.output


def test_every_command_has_a_summary():
    root = typer.main.get_command(app)
    for path in _commands(root)[1:]:
        cmd = root
        for name in path:
            cmd = cmd.commands[name]  # type: ignore[attr-defined]
        assert (cmd.help or "").strip(), f"carepath {' '.join(path)} has no help text"
