"""What every command shares: the settings and the `App`, built only when first needed."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from newsletter.clock import Clock
from newsletter.config import Settings, load_settings

if TYPE_CHECKING:
    from newsletter.app import App


class CliContext:
    def __init__(self, config_path: str | None, clock: Clock | None = None) -> None:
        self.config_path = config_path
        self.clock = clock
        # The newsletter a command acts on (`--newsletter`); None: the default one.
        self.newsletter: str | None = None
        self._settings: Settings | None = None
        self._app: App | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path).for_newsletter(self.newsletter)
        return self._settings

    def app(self, *, check_schema: bool = True) -> App:
        """The wired application; every command but `init` refuses an out-of-date schema."""
        if self._app is None:
            from newsletter.app import App  # noqa: PLC0415 - `--help` must not load the database

            self._app = App.create(self.settings, clock=self.clock)
        if check_schema:
            self._app.check_schema()
        return self._app

    def warn_about_templates(self) -> None:
        """Name the operator's template files that nothing uses: a file placed without its
        email/ or web/ folder would otherwise be ignored without a word."""
        from newsletter.issue.templates import unused_overrides  # noqa: PLC0415

        for warning in unused_overrides(self.app().templates_dirs):
            click.echo(f"warning: {warning}", err=True)

    def close(self) -> None:
        if self._app is not None:
            self._app.close()


pass_context = click.make_pass_decorator(CliContext)


def _choose_newsletter(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    cli_context = ctx.find_object(CliContext)
    if value is not None and cli_context is not None:
        cli_context.newsletter = value


newsletter_option = click.option(
    "--newsletter",
    metavar="SLUG",
    expose_value=False,
    is_eager=True,
    callback=_choose_newsletter,
    help="The newsletter to act on (default: the default newsletter).",
)
