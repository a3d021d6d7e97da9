"""Alembic migrations: the only place the catalog schema is created or changed."""

from pathlib import Path

MIGRATIONS_DIR = Path(__file__).resolve().parent
