"""Canary secrets and the scanners that look for them.

A `Canary` is a known secret with the part of it that must never show. A
leak is the whole secret or any run of `window` consecutive characters of its
random part: longer than what Metis shows by design (the last four characters
of a provider key; the ``gw_`` + 7 / ``mit_`` + 6 / ``mta_`` + 6 display
prefixes of the secrets it issues), so a half-masked secret is caught too.

The default window is 12, five more than the longest display prefix: in a
database file a stored prefix sits next to other bytes (SQLite packs the
``display_prefix`` column against the key's name), and with a window of 8 a
name starting with the secret's eighth character read as a leak, once in 64
runs. Five coincidental characters happen about once in 10^9.
"""

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from metis.db.tables import metadata

_KNOWN_PREFIX = re.compile(r"^(sk-ant-admin01-|sk-ant-api03-|sk-admin-|sk-proj-|gw_|mit_|mta_)")


@dataclass(frozen=True)
class Canary:
    name: str
    value: str
    window: int = 12  # a leak is any run of this many characters of the random part

    @property
    def random_part(self) -> str:
        return _KNOWN_PREFIX.sub("", self.value)

    def needles(self) -> list[str]:
        r = self.random_part
        runs = {r[i : i + self.window] for i in range(len(r) - self.window + 1)}
        return [self.value, *sorted(runs)]

    def found_in(self, text: str) -> str | None:
        """The first needle of this canary in ``text``, or None."""
        for n in self.needles():
            if n in text:
                return n
        return None


@dataclass
class Scanner:
    """Collects every place a canary was seen, with enough context to find it."""

    canaries: list[Canary] = field(default_factory=list)
    hits: list[str] = field(default_factory=list)
    scanned: int = 0

    def add(self, name: str, value: str, window: int = 12) -> str:
        self.canaries.append(Canary(name, value, window))
        return value

    def text(self, where: str, text: str, *, allow: Iterable[str] = ()) -> None:
        """Scan ``text``; canaries named in ``allow`` may appear (their one by-design output)."""
        self.scanned += 1
        allowed = set(allow)
        for c in self.canaries:
            if c.name in allowed:
                continue
            n = c.found_in(text)
            if n is not None:
                i = text.find(n)
                ctx = text[max(0, i - 60) : i + len(n) + 60].replace("\n", "\\n")
                self.hits.append(f"{c.name} in {where}: …{ctx}…")

    def blob(self, where: str, data: bytes) -> None:
        self.text(where, data.decode("latin-1"))

    def database(self, engine: Engine) -> None:
        """Every column of every row of every table (text, JSON, binary).

        Each table is scanned as one text first (no needle holds the NUL
        separator, so none matches across two values); only a table with a
        hit is scanned value by value, to say which column holds it.
        """
        by_table: dict[str, list[tuple[str, str]]] = {}
        for table, col, v in all_values(engine):
            if v is None:
                continue
            if isinstance(v, bytes | bytearray | memoryview):
                text = bytes(v).decode("latin-1")
            else:
                text = v if isinstance(v, str) else json.dumps(v, default=str)
            by_table.setdefault(table, []).append((f"db {table}.{col}", text))
        for values in by_table.values():
            joined = "\x00".join(t for _, t in values)
            if any(c.found_in(joined) for c in self.canaries):
                for where, text in values:
                    self.text(where, text)
            else:
                self.scanned += len(values)

    def files(self, root: Path) -> None:
        for p in sorted(root.rglob("*")):
            if p.is_file():
                self.blob(f"file {p}", p.read_bytes())


def all_values(engine: Engine) -> list[tuple[str, str, Any]]:
    """(table, column, value) for every column of every row of every table."""
    out = []
    with engine.connect() as conn:
        for t in metadata.sorted_tables:
            for row in conn.execute(select(t)).mappings():
                for col, v in row.items():
                    out.append((t.name, col, v))
    return out
