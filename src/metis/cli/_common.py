"""Helpers shared by the command modules: settings, database, output."""

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import Connection, Engine

from metis import jsonutil
from metis.config import Settings, get_settings
from metis.db.engine import make_engine
from metis.db.migrate import current_revision, head_revision
from metis.errors import ConfigError

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def settings() -> Settings:
    return get_settings()


def ready_engine(s: Settings | None = None) -> Engine:
    """An engine for a database that is initialized and at the current schema."""
    s = s or settings()
    engine = make_engine(settings=s)
    rev = current_revision(engine)
    head = head_revision()
    if rev is None:
        engine.dispose()
        raise ConfigError(
            f"database at {s.effective_database_url.split('@')[-1]} is not initialized: "
            "run `metis init`"
        )
    if rev != head:
        engine.dispose()
        raise ConfigError(
            f"database schema is at {rev}, this Metis needs {head}: run `metis db upgrade`"
        )
    return engine


@contextmanager
def transaction() -> Iterator[Connection]:
    """A connection in a transaction on the ready database; commits on success."""
    engine = ready_engine()
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()


def print_json(obj: Any) -> None:
    sys.stdout.write(jsonutil.dumps(obj).decode() + "\n")


def print_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A table on stdout; a cell too wide for the terminal wraps, it is never cut short
    (an exact amount must not become ``100.000…``)."""
    table = Table(title=title, show_lines=False)
    for c in columns:
        table.add_column(c, overflow="fold")
    for r in rows:
        table.add_row(*["" if v is None else str(v) for v in r])
    console.print(table)
