"""The root `newsletter` group and the error handling every command shares.

Each command parses its options, calls one core function, prints the result, and leaves
error reporting to `NewsletterGroup`, which turns our own errors into one line and an exit
status (1, or 2 for usage errors).

Text that came from a stranger (subscribers' names and addresses, feed titles, bounce
reports, mail servers' replies, and error messages that quote any of them) is printed
through `untrusted.for_terminal`, so that it can neither command the terminal nor reorder
the line.
"""

from __future__ import annotations

import logging
from typing import Any

import click

from .. import __version__
from ..errors import NewsletterError, UsageError
from ..untrusted import for_terminal
from .context import CliContext


class NewsletterGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UsageError as exc:
            raise click.UsageError(for_terminal(str(exc)), ctx) from None
        except NewsletterError as exc:
            raise click.ClickException(for_terminal(str(exc))) from None


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
