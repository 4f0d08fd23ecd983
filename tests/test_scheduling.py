"""The commands docs/scheduling.md tells operators to schedule exist, with every option used.

A renamed command or a dropped flag would otherwise break the weekly job silently, on a
Thursday morning, on a machine nobody is watching.
"""

from __future__ import annotations

import re
import shlex

import click
import pytest
from click.testing import CliRunner

from newsletter.cli import main

from .conftest import REPO

DOC = REPO / "docs" / "scheduling.md"
GLOBAL_OPTIONS = {"--log-level", "--config"}
SEPARATORS = {"&&", ";", "||", "|"}
_INVOKES = re.compile(r"(?:^|[\s=;&|])newsletter\s")


def _documented_commands() -> list[list[str]]:
    """Each `newsletter ...` invocation in the document's code blocks, as words."""
    blocks = re.findall(r"```[a-z]*\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    found: list[list[str]] = []
    for block in blocks:
        for line in block.splitlines():
            if line.lstrip().startswith("#") or not _INVOKES.search(line):
                continue
            command = line.partition("=")[2] if line.startswith("ExecStart=") else line
            found.extend(_invocations(shlex.split(command.replace(";", " ; "))))
    return found


def _invocations(words: list[str]) -> list[list[str]]:
    result: list[list[str]] = []
    current: list[str] | None = None
    for word in words:
        if word in SEPARATORS or word.startswith(("2>", ">")):
            current = None
        elif current is not None:
            current.append(word)
        elif word == "newsletter":
            current = []
            result.append(current)
    return result


COMMANDS = _documented_commands()


def _split(words: list[str]) -> tuple[list[str], list[str]]:
    """(command path, options used), skipping global options and their values."""
    rest = list(words)
    while rest and rest[0] in GLOBAL_OPTIONS:
        rest = rest[2:]
    group: click.Command = main
    path: list[str] = []
    while rest and isinstance(group, click.Group):
        sub = group.get_command(click.Context(group), rest[0])
        if sub is None:
            break
        path.append(rest.pop(0))
        group = sub
    return path, [w for w in rest if w.startswith("--")]


def test_the_document_schedules_the_weekly_commands() -> None:
    paths = {" ".join(_split(words)[0]) for words in COMMANDS}
    assert {"articles fetch", "send", "bounces process"} <= paths


@pytest.mark.parametrize("words", COMMANDS, ids=[" ".join(w) for w in COMMANDS])
def test_documented_command_exists_with_its_options(words: list[str]) -> None:
    runner = CliRunner()
    root = runner.invoke(main, ["--help"])
    assert root.exit_code == 0
    for option in (w for w in words if w in GLOBAL_OPTIONS):
        assert option in root.output

    path, options = _split(words)
    result = runner.invoke(main, [*path, "--help"])

    assert result.exit_code == 0, f"`newsletter {' '.join(path)} --help`: {result.output}"
    assert path, f"no such command: newsletter {' '.join(words)}"
    for option in options:
        assert re.search(rf"(?<![\w-]){re.escape(option)}\b", result.output), (
            f"`newsletter {' '.join(path)}` has no option {option}"
        )
