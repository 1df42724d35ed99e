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
    """Parse ISO 8601; a value without an offset is taken as UTC.

    Raises ValueError for text that is not ISO 8601 and for a time that has
    no UTC equivalent (``0001-01-01T00:00:00+01:00`` is before year 1 in UTC).
    """
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        return dt.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{value[:40]!r} is outside the representable range") from None


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


# The supported time range of every date and window parameter (API, dashboard,
# CLI) and of stored usage: [2000-01-01, 2200-01-01) UTC. Python's datetime
# ends at years 1 and 9999, so arithmetic near them (a default window of 7
# days before 0001-01-01, the day after 9999-12-31) raises OverflowError;
# checking parameters against this range first keeps every such value a 400
# or a CLI error naming the parameter (docs/security.md, Limits).
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
EARLIEST_DAY = EARLIEST.date()
LATEST_DAY = LATEST.date()
MAX_SPAN_DAYS = (LATEST - EARLIEST).days
"""Days from `EARLIEST` to `LATEST`: the longest meaningful ``--days`` look-back."""
RANGE_TEXT = "between 2000-01-01T00:00:00Z and 2200-01-01T00:00:00Z"


class OutOfRange(ValueError):
    """A time or day parameter outside the supported range; the message names the parameter."""


def check_time(dt: datetime, name: str) -> datetime:
    """``dt`` if ``EARLIEST <= dt <= LATEST``; `OutOfRange` naming ``name`` otherwise."""
    if not EARLIEST <= dt <= LATEST:
        raise OutOfRange(f"{name} must be {RANGE_TEXT} (got {iso(dt)})")
    return dt


def check_day(d: date, name: str) -> date:
    """``d`` if it is a day inside the supported range; `OutOfRange` otherwise."""
    if not EARLIEST_DAY <= d < LATEST_DAY:
        raise OutOfRange(
            f"{name} must be a day from 2000-01-01 to 2199-12-31 (got {d.isoformat()})"
        )
    return d
