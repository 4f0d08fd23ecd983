"""Every command explains itself and is documented in README.md."""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from newsletter.cli import main
from newsletter.cli.root import COMMANDS as COMMANDS_TABLE

from .conftest import REPO


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    context = click.Context(group)
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        assert command is not None
        path = (*prefix, name)
        yield path
        if isinstance(command, click.Group):
            yield from _commands(command, path)


COMMANDS = sorted(_commands(main))


def test_the_contract_commands_exist() -> None:
    names = {" ".join(path) for path in COMMANDS}
    expected = {
        "init",
        "demo",
        "subscribers import",
        "subscribers export",
        "subscribers add",
        "subscribers unsubscribe",
        "subscribers list",
        "articles fetch",
        "articles list",
        "issue build",
        "issue show",
        "issue feature",
        "issue exclude",
        "issue include",
        "issue move",
        "issue preview",
        "send",
        "serve",
        "stats",
        "bounces process",
    }
    assert expected <= names, sorted(expected - names)


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_command_has_help_and_is_in_the_readme(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    usage, _, description = result.output.partition("\n\n")
    assert usage.startswith("Usage: ")
    assert description.strip(), f"`newsletter {' '.join(path)}` has no help text"
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert f"`newsletter {' '.join(path)}" in readme


def test_version_and_unknown_command() -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["--version"]).output.startswith("newsletter, version ")
    assert runner.invoke(main, ["frobnicate"]).exit_code == 2


def test_the_root_help_lists_each_command_as_its_own_help_says() -> None:
    """`--help` lists commands from `root.COMMANDS` without importing them: keep it true."""
    context = click.Context(main)
    for name, (_, text) in COMMANDS_TABLE.items():
        command = main.get_command(context, name)
        assert command is not None, name
        assert command.get_short_help_str(200) == text, name


def test_every_command_module_is_named_in_the_table() -> None:
    """A command added in a new module but missing from `root.COMMANDS` would never load."""
    for module in (REPO / "newsletter" / "cli").glob("*.py"):
        importlib.import_module(f"newsletter.cli.{module.stem}")
    assert set(main.commands) == set(COMMANDS_TABLE)
    loaded = {m for modules, _ in COMMANDS_TABLE.values() for m in modules}
    helpers = {"__init__", "root", "context"}
    on_disk = {p.stem for p in (REPO / "newsletter" / "cli").glob("*.py")}
    registering = {
        stem
        for stem in on_disk - helpers
        if "@main." in (REPO / "newsletter" / "cli" / f"{stem}.py").read_text(encoding="utf-8")
        or ".command(" in (REPO / "newsletter" / "cli" / f"{stem}.py").read_text(encoding="utf-8")
    }
    assert registering <= loaded, sorted(registering - loaded)


def test_root_help_loads_neither_the_database_nor_the_renderer() -> None:
    """Start-up stays quick because `--help` imports only click and the settings."""
    probe = (
        "import sys\n"
        "from newsletter.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = {'sqlalchemy', 'alembic', 'jinja2', 'mjml', 'premailer', 'feedparser',\n"
        "         'flask', 'httpx', 'waitress', 'dkim', 'email_validator'}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout
