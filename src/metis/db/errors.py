"""What a database error *is*, in words a user can act on (one place for the API and CLI).

A database that is down, read-only, busy or out of disk is an operational
state (503, retry later). A value the database refused (an integer out of
range, a constraint) is not: calling that "database unavailable" sends the
operator looking for an outage that is not there (issue 19: an overflow on
SQLite was reported as ``503 database_unavailable``). `classify` tells them
apart from the driver's error class and message; the driver's own text is
for the log only (it can name hosts, paths and SQL).
"""

from dataclasses import dataclass

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError


@dataclass(frozen=True)
class DbFailure:
    """How to report one database error: HTTP status, stable code, sentence, retryable."""

    status: int
    code: str
    message: str
    retryable: bool


def _text(exc: BaseException) -> str:
    return str(getattr(exc, "orig", None) or exc).lower()


def classify(exc: BaseException) -> DbFailure:
    """The `DbFailure` for ``exc`` (a SQLAlchemy `DBAPIError` or anything else)."""
    text = _text(exc)
    if "integer overflow" in text or "out of range" in text or isinstance(exc, DataError):
        return DbFailure(
            422,
            "value_out_of_range",
            "a value or sum is outside what the database can store exactly "
            "(64-bit integers); nothing was written",
            False,
        )
    if isinstance(exc, IntegrityError):
        return DbFailure(
            409,
            "conflict",
            "the change conflicts with stored data (a database constraint refused it); "
            "nothing was written",
            False,
        )
    if isinstance(exc, OperationalError) or "read-only" in text:
        if "readonly" in text or "read-only" in text:
            what = "the database is read-only"
        elif "full" in text or "no space" in text:
            what = "the database's disk is full"
        elif "locked" in text or "busy" in text:
            what = "the database is busy"
        else:
            what = "the database is unavailable"
        return DbFailure(503, "database_unavailable", f"{what}; retry later", True)
    name = type(getattr(exc, "orig", None) or exc).__name__
    kind = "database error" if isinstance(exc, DBAPIError) else "error"
    message = f"the database refused the request ({kind}: {name})"
    return DbFailure(503, "database_error", message, False)
