"""UTC time helpers: everything Metis stores or prints is UTC, ISO 8601 with ``Z``."""

from datetime import UTC, date, datetime, timedelta


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def iso(dt: datetime) -> str:
    """Render an aware datetime as ISO 8601 UTC with a ``Z`` suffix."""
    if dt.tzinfo is None:
        raise ValueError("naive datetime; Metis only handles aware UTC times")
    s = dt.astimezone(UTC).isoformat()
    return s.replace("+00:00", "Z")


def parse_iso(value: str) -> datetime:
    """Parse ISO 8601; a value without an offset is taken as UTC."""
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def day_start(d: date) -> datetime:
    """Midnight UTC at the start of day ``d``."""
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


def day_window(d: date) -> tuple[datetime, datetime]:
    """The half-open UTC window ``[d 00:00, d+1 00:00)``."""
    start = day_start(d)
    return start, start + timedelta(days=1)


def month_key(dt: datetime) -> str:
    """``YYYY-MM`` of an aware datetime in UTC (the monthly cap period)."""
    return dt.astimezone(UTC).strftime("%Y-%m")


def day_key(dt: datetime) -> str:
    """``YYYY-MM-DD`` of an aware datetime in UTC (the daily cap period)."""
    return dt.astimezone(UTC).strftime("%Y-%m-%d")
