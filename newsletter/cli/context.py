"""What every command shares: the settings and the `App`, built only when first needed."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from newsletter.config import Settings, load_settings

if TYPE_CHECKING:
    from newsletter.app import App


class CliContext:
    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._settings: Settings | None = None
        self._app: App | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
        return self._settings

    def app(self, *, check_schema: bool = True) -> App:
        """The wired application; every command but `init` refuses an out-of-date schema."""
        if self._app is None:
            from newsletter.app import App  # noqa: PLC0415 - `--help` must not load the database

            self._app = App.create(self.settings)
        if check_schema:
            self._app.check_schema()
        return self._app

    def close(self) -> None:
        if self._app is not None:
            self._app.close()


pass_context = click.make_pass_decorator(CliContext)
