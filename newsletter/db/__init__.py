"""Persistence: typed models, sessions and the Alembic migrations that own the schema."""
