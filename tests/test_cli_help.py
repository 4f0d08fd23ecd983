"""Every command explains itself and is documented in README.md."""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from newsletter.cli import main

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
