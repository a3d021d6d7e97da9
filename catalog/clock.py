"""The one clock of the catalog's rows: naive UTC, as every ``DateTime`` column holds it.

SQLite has no time zones and the columns were created without them, so every
writer strips the zone after reading the UTC time; one function, so that no writer
stamps local time by mistake.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    """Now, in UTC, without a zone (what the catalog's ``DateTime`` columns store)."""
    return datetime.now(UTC).replace(tzinfo=None)
