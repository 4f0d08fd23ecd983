"""`newsletter issue preview`: write the rendered issue for a look before sending."""

from __future__ import annotations

from .issue import issue  # noqa: F401
