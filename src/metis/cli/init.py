"""``metis init``: set up $METIS_HOME and the database."""

from metis.cli._common import console, settings
from metis.home import initialize


def init() -> None:
    """Create $METIS_HOME (0700), the master key (0600) and the database, and migrate it.

    Safe to run again: an initialized home is left as it is.

    Example:

        METIS_HOME=~/.metis metis init
    """
    s = settings()
    report = initialize(s)
    for path in report.created:
        console.print(f"created {path}")
    if report.migrated_to:
        console.print(
            f"database migrated {report.migrated_from or 'empty'} -> {report.migrated_to}"
        )
    if not report.created and not report.migrated_to:
        console.print(f"{s.home} is already initialized; nothing to do")
