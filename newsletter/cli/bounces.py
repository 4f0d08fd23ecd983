"""Commands for bounces; registered on `main` by importing this module."""

from __future__ import annotations

from .root import main  # noqa: F401
