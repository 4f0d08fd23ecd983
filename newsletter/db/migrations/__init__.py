"""Alembic environment and revisions, shipped with the package so `newsletter init` works."""
