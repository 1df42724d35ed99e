"""Numeric bounds that keep every stored value and every sum of the ledger exact.

Money is integer nano-USD and token counts are integers, stored as signed
64-bit columns on both backends. Neither backend may be allowed to overflow:
PostgreSQL raises ``bigint out of range`` (and the whole transaction is
lost), and SQLite silently turns an overflowing ``+`` into a REAL (inexact
money) and makes ``SUM()`` raise ``integer overflow``. The argument for why
nothing overflows (docs/security.md, "Limits") is:

1. **Per item.** Every value that enters the ledger from outside (push API,
   ``metis ingest push``, the Hermes import, provider reports, and later the
   gateway) is at most `ITEM_MAX_COST_NANOUSD` (USD 100 million) and
   `ITEM_MAX_TOKENS` (10^15) per measure; an item above is refused naming
   the field.
2. **Per rollup cell.** The daily rollups keep running sums, one row per
   (day, workspace, source, provider, model, user, team, key) and coarser
   projections. `check_delta` refuses a batch whose change to one rollup
   row reaches `CELL_MAX` (2^62) before any SQL runs, so ``stored + delta``
   can reach at most 2^63 − 1 and never overflows; the write then reads the
   new values back (``RETURNING``) and `check_cell` refuses (raising
   `LedgerLimitError`, so the caller's transaction rolls back) any row above
   `CELL_MAX`. Every stored rollup value is therefore ≤ 2^62.
3. **Per query.** Sums over many rows or rollup rows are computed with
   `metis.db.sums.wide_sum`: on PostgreSQL ``SUM(bigint)`` is NUMERIC
   (arbitrary precision); on SQLite the value is split into its high and low
   32 bits and each half is summed, which is exact for up to 2^31 summed
   rows of values ≤ 2^62 (2^31 · 2^30 and 2^31 · 2^32 both stay below 2^63).
   Python adds the halves back with arbitrary-precision integers.

So a hostile client can at worst fill its own rollup cells up to USD 4.6
billion (2^62 nano-USD) per cell and day, and is then refused with a clear
error; nothing stored is lost and no total becomes inexact.
"""

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from metis.errors import MetisError

ITEM_MAX_COST_USD = Decimal(10**8)
"""The largest cost one usage item (a call, a rollup, a provider bucket) may carry."""
ITEM_MAX_COST_NANOUSD = 10**17
ITEM_MAX_TOKENS = 10**15
"""The largest count one item may carry in any token measure or ``request_count``."""
CELL_MAX = 2**62
"""The largest value any rollup row may hold in any measure (about USD 4.6 billion)."""


class LedgerLimitError(MetisError):
    """A write would take a rollup row past `CELL_MAX`; nothing of it may be committed.

    Raised inside the writer's transaction: the caller must roll back (the
    push API retries item by item so only the offending items are refused).
    HTTP surfaces answer it with 422 ``ledger_limit_exceeded``.
    """


def _describe(key: Mapping[Any, Any]) -> str:
    parts = [str(key[k]) for k in ("usage_date", "source", "provider", "model") if k in key]
    return " / ".join(parts) or "a rollup row"


def check_delta(key: Mapping[Any, Any], measures: Sequence[str], values: Sequence[int]) -> None:
    """Refuse a single change to one rollup row larger than `CELL_MAX` in any measure."""
    for m, v in zip(measures, values, strict=True):
        if abs(v) >= CELL_MAX:  # stored (<= 2^62) + delta (< 2^62) <= 2^63 - 1
            raise LedgerLimitError(
                f"{m} of {_describe(key)} would change by more than the ledger's "
                f"per-cell limit ({CELL_MAX}) in one write"
            )


def check_cell(key: Mapping[Any, Any], measures: Sequence[str], values: Sequence[Any]) -> None:
    """Refuse a rollup row whose stored value is above `CELL_MAX` (or not an integer)."""
    for m, v in zip(measures, values, strict=True):
        if not isinstance(v, int) or abs(v) > CELL_MAX:
            raise LedgerLimitError(
                f"{m} of {_describe(key)} would exceed the ledger's per-cell limit of "
                f"{CELL_MAX} (day, source, provider, model and identity)"
            )
