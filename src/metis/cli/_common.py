"""Helpers shared by the command modules: settings, database, output."""

import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text
from sqlalchemy import Connection, Engine

from metis import jsonutil
from metis.config import Settings, get_settings
from metis.db.engine import make_engine, normalize_url, sqlite_path
from metis.db.migrate import current_revision, head_revision
from metis.errors import ConfigError

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def settings() -> Settings:
    return get_settings()


def ready_engine(s: Settings | None = None) -> Engine:
    """An engine for a database that is initialized and at the current schema."""
    s = s or settings()
    path = sqlite_path(normalize_url(s.effective_database_url))
    if path is not None and not path.exists():
        # Not even the file: say so, and create nothing (an empty file would only
        # make the next command say "not initialized" about the wrong place).
        raise ConfigError(
            f"no Metis database at {path} (METIS_HOME={s.home}): run `metis init` to create "
            "one there, or point METIS_HOME at an existing home (a running `metis demo` "
            "prints the `export METIS_HOME=…` line for its own)"
        )
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


# A stable id as Metis makes them: ``<kind>_<26-character ULID>`` (key_…, usr_…, cred_…).
ID_RE = re.compile(r"^[a-z]+_[0-9A-HJKMNP-TV-Z]{26}$")
WIDE_HELP = "One row per line even when wider than the terminal (default: fit it)."


def cell_text(value: Any) -> str:
    """How a value reads in a table: booleans as yes/no, None as empty, times in ISO 8601."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        from metis.timeutil import iso

        return iso(value)
    return str(value)


def print_table(
    title: str | None,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    wide: bool = False,
) -> None:
    """Print ``rows`` under ``columns``; cells are plain text (never Rich markup).

    Ids are never cut: a column of ids keeps its full width, and when the
    table is wider than the terminal it is printed as one block per row
    (``column  value`` lines) instead, so nothing is truncated or folded
    mid-id. ``wide`` prints the table layout anyway, as wide as it needs.
    """
    cells = [[cell_text(v) for v in r] for r in rows]
    table = Table(
        title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, title_justify="left"
    )
    for i, c in enumerate(columns):
        values = [r[i] for r in cells if i < len(r)]
        is_id = bool(values) and all(ID_RE.match(v) for v in values if v) and any(values)
        longest = max((len(v) for v in values), default=0)
        if is_id:
            table.add_column(c, no_wrap=True, min_width=max(longest, len(c)))
        else:
            table.add_column(c, overflow="fold")
    for r in cells:
        table.add_row(*(Text(v) for v in r))
    need = Measurement.get(console, console.options.update(width=1_000_000), table).maximum
    if wide:
        Console(highlight=False, soft_wrap=True, width=max(need, console.width)).print(table)
        return
    if need <= console.width:
        console.print(table)
        return
    _print_records(title, columns, cells)


def _print_records(title: str | None, columns: Sequence[str], cells: list[list[str]]) -> None:
    """The narrow-terminal layout: one block of ``column  value`` lines per row."""
    out = console
    label_w = max((len(c) for c in columns), default=0)
    if title:
        out.print(Text(title, style="italic"))
    for n, r in enumerate(cells):
        if n or title:
            out.print()
        for c, v in zip(columns, r, strict=False):
            if v:
                out.print(Text(f"{c.ljust(label_w)}  {v}"))
