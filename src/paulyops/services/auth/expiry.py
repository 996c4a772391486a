"""How commands read an expiry: an instant, or a day alone meaning the end of that day.

Forms ask for a date (``<input type="date">``); the JSON API sends instants. Both go
through the same command field, whose rules (in the future, within a limit) are checked
once on the instant this returns.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time

DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def end_of_day(day: date) -> datetime:
    """Return the last second of ``day`` in UTC."""
    return datetime.combine(day, time(23, 59, 59), tzinfo=UTC)


def read_expiry(value: object) -> object:
    """Turn a form's blank into ``None`` and a day into its end; leave the rest to pydantic.

    Use it as a ``mode="before"`` validator: an impossible day (``2026-13-45``) is left as
    it is, so the datetime check names the field.
    """
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if DAY.fullmatch(text):
            try:
                return end_of_day(date.fromisoformat(text))
            except ValueError:
                return value
    if isinstance(value, date) and not isinstance(value, datetime):
        return end_of_day(value)
    return value


__all__ = ["end_of_day", "read_expiry"]
