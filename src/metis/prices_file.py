"""The prices file: prices for models genai-prices does not know (self-hosted, unlisted).

``$METIS_HOME/prices.yaml`` (or ``METIS_PRICES_FILE``)::

    schema_version: 1
    prices:
      - provider: my-vllm                 # the Metis provider name (provider-key --provider)
        model: llama-3.1-8b-instruct      # as the upstream reports it; "*" = any model
        from: 2026-01-01                  # effective from this UTC day (default: always)
        input_per_mtok: 0.10              # USD per million tokens
        output_per_mtok: 0.20
        cache_read_per_mtok: 0.01         # optional (default: the input price)
        cache_write_per_mtok: 0.125       # optional (default: the input price)

Rules (`metis.pricing.price` applies them):

- **genai-prices first.** The file is read only for a (provider, model)
  genai-prices has no price for (a self-hosted model, a provider without a
  genai-prices id, a model newer than the installed data). It never
  overrides genai-prices: ``metis prices check`` shows an entry it shadows.
- The entry of the call's provider and model (case-insensitive) whose
  ``from`` is the latest on or before the call's UTC day prices it; a
  ``model: "*"`` entry of the provider applies when no exact one does. A call
  before every ``from`` of its model is unpriced.
- Canonical token semantics: input includes cache reads and writes (priced at
  their own rates), output includes reasoning (priced as output).
- Money is exact (Decimal); records priced from the file carry
  ``pricing_version = prices-file:<first 12 hex of the file's SHA-256>``.

A malformed file raises `PricesFileError` with one line naming the entry and
field (``prices.yaml: prices[2] "my-vllm/llama": input_per_mtok: must be a
non-negative number of USD``). Running processes keep the last good file
and log the error; ``metis prices check`` prints it and exits 1.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from metis.errors import MetisError

log = logging.getLogger("metis.pricing")

SCHEMA_VERSION = 1
PRICE_FIELDS = ("input_per_mtok", "output_per_mtok", "cache_read_per_mtok", "cache_write_per_mtok")
_ENTRY_FIELDS = ("provider", "model", "from", *PRICE_FIELDS)
MAX_PRICE_PER_MTOK = Decimal(1_000_000)
RECHECK_S = 1.0
"""How often (at most) a process looks at the file's modification time."""


class PricesFileError(MetisError):
    """The prices file is malformed; the message names the entry and field."""


@dataclass(frozen=True, slots=True)
class FilePrice:
    """One entry: USD per million tokens from ``effective`` (UTC day) on."""

    provider: str
    model: str
    effective: date | None
    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write: Decimal


@dataclass
class PricesFile:
    path: Path
    version: str  # prices-file:<sha12>
    entries: list[FilePrice] = field(default_factory=list)
    _by_key: dict[tuple[str, str], list[FilePrice]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for e in self.entries:
            self._by_key.setdefault((e.provider, e.model), []).append(e)
        for lst in self._by_key.values():
            lst.sort(key=lambda e: e.effective or date.min)

    def find(self, provider: str, model: str, at: datetime | None = None) -> FilePrice | None:
        """The entry pricing ``model`` of ``provider`` at ``at`` (None = now), or None."""
        day = (at or datetime.now(UTC)).astimezone(UTC).date()
        for key in ((provider, model.lower()), (provider, "*")):
            hit = None
            for e in self._by_key.get(key, ()):
                if e.effective is None or e.effective <= day:
                    hit = e
            if hit is not None:
                return hit
        return None

    def has(self, provider: str, model: str) -> bool:
        """Whether any entry (any date) prices ``model`` of ``provider``."""
        return (provider, model.lower()) in self._by_key or (provider, "*") in self._by_key


def default_path() -> Path:
    """``METIS_PRICES_FILE``, else ``$METIS_HOME/prices.yaml`` (``~/.metis`` by default)."""
    explicit = os.environ.get("METIS_PRICES_FILE")
    if explicit:
        return Path(explicit).expanduser()
    home = os.environ.get("METIS_HOME")
    return (Path(home).expanduser() if home else Path.home() / ".metis") / "prices.yaml"


def parse(text: str, path: Path) -> PricesFile:
    """Validate the file's text; raise `PricesFileError` prefixed with the file's name."""
    try:
        entries = _entries(text)
    except PricesFileError as exc:
        raise PricesFileError(f"{path.name}: {exc.message}") from None
    sha = hashlib.sha256(text.encode()).hexdigest()[:12]
    return PricesFile(path, f"prices-file:{sha}", entries)


def load(path: Path) -> PricesFile | None:
    """The file at ``path`` (None when it does not exist); `PricesFileError` when malformed."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise PricesFileError(f"{path}: cannot read: {exc}") from None
    return parse(text, path)


def _usd(value: Any, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise PricesFileError(f"{where}: must be a non-negative number of USD")
    try:
        d = Decimal(str(value).strip())
    except InvalidOperation:
        raise PricesFileError(f"{where}: must be a non-negative number of USD") from None
    if not d.is_finite() or d < 0 or d > MAX_PRICE_PER_MTOK:
        raise PricesFileError(f"{where}: must be a non-negative number of USD (at most 1e6)")
    return d


def _entries(text: str) -> list[FilePrice]:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise PricesFileError(f"invalid YAML{at}: {getattr(exc, 'problem', None) or exc}") from None
    if doc is None:
        return []
    if not isinstance(doc, dict):
        raise PricesFileError("must be a mapping with schema_version and prices")
    for key in doc:
        if key not in ("schema_version", "prices"):
            raise PricesFileError(
                f"unknown top-level field {key!r} (known: schema_version, prices)"
            )
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise PricesFileError(
            f"schema_version: must be {SCHEMA_VERSION}, got {doc.get('schema_version')!r}"
        )
    raw = doc.get("prices") or []
    if not isinstance(raw, list):
        raise PricesFileError("prices: must be a list of entries")
    out: list[FilePrice] = []
    seen: set[tuple[str, str, date | None]] = set()
    for i, item in enumerate(raw):
        out.append(_entry(item, i, seen))
    return out


def _entry(item: Any, i: int, seen: set[tuple[str, str, date | None]]) -> FilePrice:
    from metis.gateway.upstreams.catalog import NAME_RE

    where = f"prices[{i}]"
    if not isinstance(item, dict):
        raise PricesFileError(f"{where}: must be a mapping")
    if isinstance(item.get("provider"), str) and isinstance(item.get("model"), str):
        where = f'{where} "{item["provider"]}/{item["model"]}"'
    for key in item:
        if key not in _ENTRY_FIELDS:
            raise PricesFileError(
                f"{where}: unknown field {key!r} (known: {', '.join(_ENTRY_FIELDS)})"
            )
    provider = item.get("provider")
    if not isinstance(provider, str) or not NAME_RE.match(provider):
        raise PricesFileError(
            f"{where}.provider: must be a provider name (as in `metis provider-key list`)"
        )
    model = item.get("model")
    if not isinstance(model, str) or not model.strip() or len(model) > 200:
        raise PricesFileError(f"{where}.model: must be a model name (1-200 characters) or '*'")
    eff = item.get("from")
    if eff is not None:
        if isinstance(eff, datetime) or not isinstance(eff, date | str):
            raise PricesFileError(f"{where}.from: must be a date, YYYY-MM-DD")
        if isinstance(eff, str):
            try:
                eff = date.fromisoformat(eff.strip())
            except ValueError:
                raise PricesFileError(f"{where}.from: must be a date, YYYY-MM-DD") from None
    for req in ("input_per_mtok", "output_per_mtok"):
        if req not in item:
            raise PricesFileError(f"{where}.{req}: required (USD per million tokens)")
    p_in = _usd(item["input_per_mtok"], f"{where}.input_per_mtok")
    p_out = _usd(item["output_per_mtok"], f"{where}.output_per_mtok")
    p_read = (
        _usd(item["cache_read_per_mtok"], f"{where}.cache_read_per_mtok")
        if item.get("cache_read_per_mtok") is not None
        else p_in
    )
    p_write = (
        _usd(item["cache_write_per_mtok"], f"{where}.cache_write_per_mtok")
        if item.get("cache_write_per_mtok") is not None
        else p_in
    )
    key = (provider, model.strip().lower(), eff)
    if key in seen:
        raise PricesFileError(
            f"{where}: duplicate entry for {provider}/{model} from {eff or 'always'}"
        )
    seen.add(key)
    return FilePrice(provider, key[1], eff, p_in, p_out, p_read, p_write)


@dataclass
class _Cache:
    path: Path | None = None
    checked: float = 0.0
    stamp: tuple[int, int] | None = None  # (mtime_ns, size)
    file: PricesFile | None = None
    failed_stamp: tuple[int, int] | None = None


_cache = _Cache()


def current() -> PricesFile | None:
    """The prices file in effect for this process (re-read when it changed; checked at most
    every `RECHECK_S`). A malformed new version is logged once and the last good one kept."""
    path = default_path()
    now = time.monotonic()
    c = _cache
    if path == c.path and now - c.checked < RECHECK_S:
        return c.file
    if path != c.path:
        c.path, c.stamp, c.file, c.failed_stamp = path, None, None, None
    c.checked = now
    try:
        st = path.stat()
    except OSError:
        c.stamp, c.file = None, None
        return None
    stamp = (st.st_mtime_ns, st.st_size)
    if stamp == c.stamp or stamp == c.failed_stamp:
        return c.file
    try:
        c.file = load(path)
        c.stamp, c.failed_stamp = stamp, None
    except PricesFileError as exc:
        c.failed_stamp = stamp
        log.error("prices file not loaded, keeping the last good one: %s", exc.message)
    return c.file


def reset_cache() -> None:
    """Forget the loaded file (tests; the next `current` reads it again)."""
    global _cache
    _cache = _Cache()
