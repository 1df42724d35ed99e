"""Column types that behave the same on SQLite and PostgreSQL."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Dialect, Integer
from sqlalchemy.types import TypeDecorator

# SQLite only auto-increments an INTEGER PRIMARY KEY, so big ids are INTEGER there.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on both backends.

    PostgreSQL stores ``timestamptz``. SQLite has no time zone support, so the
    value is stored as naive UTC text, which still sorts and compares
    correctly. Reads always return aware UTC datetimes; binding a naive
    datetime is a programming error and raises.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime bound to a UTC column")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def bind_processor(self, dialect: Dialect) -> Any:
        """On SQLite, one function producing the stored text directly.

        Equal to `process_bind_param` followed by SQLite's DATETIME processor
        (``YYYY-MM-DD HH:MM:SS.ffffff``, tested against that chain), several
        times cheaper: every usage record and event binds these columns.
        """
        if dialect.name == "sqlite":
            return _sqlite_utc_text
        return super().bind_processor(dialect)

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        """On SQLite, one C parse of the stored text straight to an aware UTC datetime.

        Equal to SQLite's DATETIME processor followed by `process_result_value`
        for the text `bind_processor` writes (tested against that chain), and
        several times cheaper: an export reads two of these per row. Text in
        any other form takes that chain.
        """
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)
        chain = super().result_processor(dialect, coltype)
        assert chain is not None

        def process(value: Any) -> datetime | None:
            if value is None:
                return None
            if len(value) == 26 and value[10] == " ":  # YYYY-MM-DD HH:MM:SS.ffffff
                return datetime.fromisoformat(value + "+00:00")
            return chain(value)

        return process

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _sqlite_utc_text(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime bound to a UTC column")
    if value.utcoffset():
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")
