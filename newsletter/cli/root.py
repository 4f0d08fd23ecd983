"""The root `newsletter` group and the error handling every command shares.

Each command parses its options, calls one core function, prints the result, and leaves
error reporting to `NewsletterGroup`, which turns our own errors into one line and an exit
status (1, or 2 for usage errors).

A command's module (and the core it uses) is imported only when that command runs: importing
everything up front made `newsletter --help` take a second. `COMMANDS` names the module(s)
that register each command on `main`, and the one-line help `--help` lists without importing
them; a test keeps those lines equal to the commands' own help.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

import click

from newsletter import __version__
from newsletter.cli.context import CliContext
from newsletter.errors import NewsletterError, UsageError

COMMANDS: dict[str, tuple[tuple[str, ...], str]] = {
    "articles": (("articles",), "Read the publication's feeds and look at the stored articles."),
    "bounces": (("bounces",), "Read bounce reports, complaints and mailto unsubscribes."),
    "demo": (
        ("demo",),
        "Run init, import, fetch, build and send on example data, into an outbox folder.",
    ),
    "init": (("database",), "Create the database, or migrate it to the current schema."),
    "issue": (("issue", "preview"), "Build, review and adjust the week's issue."),
    "send": (
        ("sending",),
        "Send (or resume sending) the week's issue to all active subscribers.",
    ),
    "serve": (("web",), "Serve unsubscribe, subscribe, confirm and the archive until interrupted."),
    "stats": (
        ("reports",),
        "Per issue: recipients, sent, failed, deferred, bounced, unsubscribed; and list growth.",
    ),
    "subscribers": (("subscribers",), "Import, export and change the subscriber list."),
}


class NewsletterGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS:  # each module once; later imports are a dictionary look-up
            for module in COMMANDS[cmd_name][0]:
                importlib.import_module(f"newsletter.cli.{module}")
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from `COMMANDS`, so that `--help` imports no command."""
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [
            (name, click.Command(name, help=COMMANDS[name][1]).get_short_help_str(limit))
            for name in sorted(COMMANDS)
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UsageError as exc:
            raise click.UsageError(str(exc), ctx) from None
        except NewsletterError as exc:
            raise click.ClickException(str(exc)) from None
        except Exception as exc:
            # Imported only on this path: `--help` must not load the database layer.
            from newsletter.db.session import operator_error  # noqa: PLC0415

            error = operator_error(exc)
            if error is None:
                raise
            raise click.ClickException(str(error)) from None


@click.group(cls=NewsletterGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar="NEWSLETTER_CONFIG",
    help="Configuration file (default: ./newsletter.toml, or $NEWSLETTER_CONFIG).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="warning",
    show_default=True,
    help="How much to log to stderr.",
)
@click.version_option(__version__, prog_name="newsletter")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, log_level: str) -> None:
    """Build and send the weekly round-up of a publication's articles."""
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
    )
    cli_context = CliContext(config_path)
    ctx.obj = cli_context
    ctx.call_on_close(cli_context.close)
