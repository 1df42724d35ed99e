"""One-off import of past usage from a Hermes Agent ``state.db``.

Hermes keeps per-session, per-model totals in its ``session_model_usage``
table (Hermes token semantics: its ``input_tokens`` excludes cache reads and
writes, which are separate columns). Each row becomes one rollup record with
``granularity = "session"``, ``source = hermes_plugin``,
``source_ref = "hermes-import"``, keyed by the row's primary key so a re-import
is a no-op and a grown session revises its record.

Sessions the live plugin has already reported call by call (request rows with
that ``session_id`` in the workspace) are skipped, so installing the plugin
and importing history never count a session twice.
"""

import hashlib
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select

from metis import pricing
from metis.db.tables import usage_records
from metis.errors import MetisError, ValidationError
from metis.ledger.bounds import ITEM_MAX_COST_NANOUSD, ITEM_MAX_COST_USD, ITEM_MAX_TOKENS
from metis.ledger.record import UsageRecord
from metis.ledger.upsert import UpsertCounts, upsert_usage
from metis.money import to_nanousd
from metis.security.fields import (
    BASE_URL_MAX,
    ID_MAX,
    METADATA_VALUE_MAX,
    MODEL_MAX,
    bounded,
    bounded_optional,
)
from metis.util.urls import normalize_base_url

SOURCE = "hermes_plugin"
SOURCE_REF = "hermes-import"

_QUERY = """
SELECT u.session_id, u.model, u.billing_provider, u.billing_base_url, u.billing_mode, u.task,
       u.api_call_count, u.input_tokens, u.output_tokens, u.cache_read_tokens,
       u.cache_write_tokens, u.reasoning_tokens, u.actual_cost_usd, u.first_seen, u.last_seen,
       s.started_at, s.ended_at, s.billing_provider, s.billing_base_url
FROM session_model_usage u LEFT JOIN sessions s ON s.id = u.session_id
ORDER BY u.session_id, u.model
"""


@dataclass
class ImportResult:
    counts: UpsertCounts
    rows: int
    skipped_live: int


MAX_TOKENS = ITEM_MAX_TOKENS
MAX_COST_USD = ITEM_MAX_COST_USD
_EARLIEST_TS = 946_684_800.0  # 2000-01-01
_LATEST_TS = 4_102_444_800.0  # 2100-01-01


def _ts(v: Any) -> datetime | None:
    """A Hermes epoch-seconds column; None when absent or not a time in 2000..2100."""
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):
        return None
    if not _EARLIEST_TS <= f <= _LATEST_TS:  # also rejects NaN
        return None
    return datetime.fromtimestamp(f, tz=UTC)


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _int(v: Any, column: str, session: str) -> int:
    """A Hermes count column: absent is 0, else an integer in ``[0, MAX_TOKENS]``.

    Hermes declares these INTEGER; anything else (negative, fractional, text,
    huge) means the file is not what we think it is, so the import stops with
    an error naming the session and column instead of storing a guess.
    """
    if v is None:
        return 0
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_TOKENS:
        raise ValidationError(
            f"Hermes session {session!r}: {column} is {_show(v)}, not a token count"
        )
    return v


def _cost(v: Any, session: str) -> Decimal:
    """``actual_cost_usd``: a finite amount in ``[0, MAX_COST_USD]`` (absent is 0)."""
    if v is None:
        return Decimal(0)
    if isinstance(v, bool) or not isinstance(v, int | float | str):
        raise ValidationError(f"Hermes session {session!r}: actual_cost_usd is {_show(v)}")
    try:
        d = Decimal(repr(v)) if isinstance(v, float) else Decimal(str(v).strip())
    except ArithmeticError:
        raise ValidationError(
            f"Hermes session {session!r}: actual_cost_usd is {_show(v)}, not an amount"
        ) from None
    if not d.is_finite() or not 0 <= d <= MAX_COST_USD:
        raise ValidationError(
            f"Hermes session {session!r}: actual_cost_usd is {_show(v)}, "
            f"not an amount in 0..{MAX_COST_USD}"
        )
    return d


def hermes_provider(name: str | None, mode: str | None = None) -> str:
    """Metis's provider for a Hermes provider name (as the Hermes plugin maps it).

    Hermes calls any OpenAI-compatible endpoint with a custom base URL
    ``custom``; those speak OpenAI's API, so they are ``openai`` here.
    """
    p = (name or "").strip().lower()
    if mode == "anthropic_messages" or p == "anthropic":
        return "anthropic"
    if p in ("", "custom", "openai", "openai-codex", "openai_compatible"):
        return "openai"
    return p[:64]


def read_state_db(path: Path) -> list[sqlite3.Row]:
    """The usage rows of a Hermes ``state.db`` (opened read-only)."""
    if not path.is_file():
        raise ValidationError(f"no Hermes state database at {path}")
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise MetisError(f"cannot open {path}: {exc}") from None
    try:
        con.row_factory = sqlite3.Row
        return con.execute(_QUERY).fetchall()
    except sqlite3.Error as exc:
        raise MetisError(f"{path} is not a Hermes state.db ({exc})") from None
    finally:
        con.close()


def to_records(rows: list[sqlite3.Row], workspace_id: str) -> list[UsageRecord]:
    """Convert Hermes usage rows to canonical session rollups."""
    out = []
    for r in rows:
        (sid, model, bprov, burl, bmode, task, calls, inp, outp, cread, cwrite, reas, actual) = (
            r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12]
        )  # fmt: skip
        session = bounded(str(sid), ID_MAX)
        start = _ts(r["first_seen"]) or _ts(r["started_at"])
        if start is None:
            continue
        end = _ts(r["last_seen"]) or _ts(r["ended_at"]) or start
        if end <= start:
            end = start + timedelta(seconds=1)
        if not isinstance(model, str) or not model.strip():
            raise ValidationError(f"Hermes session {session!r}: model is {_show(model)}")
        texts = (bprov, burl, bmode, task, r[17], r[18])
        if not all(t is None or isinstance(t, str) for t in texts):
            raise ValidationError(f"Hermes session {session!r}: a billing column is not text")
        provider = hermes_provider(bprov or r[17], bmode)
        cached = _int(cread, "cache_read_tokens", session)
        creation = _int(cwrite, "cache_write_tokens", session)
        input_total = _int(inp, "input_tokens", session) + cached + creation
        output = _int(outp, "output_tokens", session)
        reasoning = min(_int(reas, "reasoning_tokens", session), output)
        try:
            p = pricing.price(
                provider,
                model,
                input_tokens=input_total,
                output_tokens=output,
                cached_input_tokens=cached,
                cache_creation_input_tokens=creation,
                reasoning_tokens=reasoning,
                at=start,
            )
        except ValueError as exc:  # a cost beyond any real session
            raise ValidationError(f"Hermes session {session!r}: {exc}") from None
        cost, cost_source, pv = p.cost_nanousd, p.cost_source, p.pricing_version
        if cost is not None and cost > ITEM_MAX_COST_NANOUSD:
            raise ValidationError(
                f"Hermes session {session!r}: its tokens price at more than "
                f"{MAX_COST_USD} USD, beyond any real session"
            )
        if cost is None:
            cost, pv = 0, None
            hermes_cost = _cost(actual, session)
            if hermes_cost > 0:
                cost, cost_source = to_nanousd(hermes_cost), "provider_reported"
        key_src = "\x1f".join(str(x or "") for x in (sid, model, bprov, burl, bmode, task))
        out.append(
            UsageRecord(
                workspace_id=workspace_id,
                source=SOURCE,
                source_ref=SOURCE_REF,
                dedupe_key="hermes-import:" + hashlib.sha256(key_src.encode()).hexdigest(),
                window_start=start,
                window_end=end,
                granularity="session",
                provider=provider,
                model=bounded(p.model_normalized, MODEL_MAX),
                model_raw=bounded(str(model), MODEL_MAX),
                input_tokens=input_total,
                output_tokens=output,
                cached_input_tokens=cached,
                cache_creation_input_tokens=creation,
                reasoning_tokens=reasoning,
                request_count=_int(calls, "api_call_count", session),
                cost_nanousd=cost,
                cost_source=cost_source,
                pricing_version=pv,
                session_id=session,
                base_url=bounded_optional(normalize_base_url(burl or r[18]), BASE_URL_MAX),
                metadata={"hermes_task": bounded(task, METADATA_VALUE_MAX)} if task else None,
            )
        )
    return out


def import_state_db(conn: Connection, path: Path, workspace_id: str) -> ImportResult:
    """Import ``path`` into ``workspace_id`` (inside the caller's transaction)."""
    rows = read_state_db(path)
    records = to_records(rows, workspace_id)
    sessions = sorted({r.session_id for r in records if r.session_id})
    live: set[str] = set()
    for i in range(0, len(sessions), 500):
        live.update(
            conn.execute(
                select(usage_records.c.session_id)
                .where(
                    usage_records.c.workspace_id == workspace_id,
                    usage_records.c.source == SOURCE,
                    usage_records.c.granularity == "request",
                    usage_records.c.session_id.in_(sessions[i : i + 500]),
                )
                .distinct()
            ).scalars()
        )
    keep = [r for r in records if r.session_id not in live]
    counts = upsert_usage(conn, keep)
    return ImportResult(counts, len(rows), len(records) - len(keep))
