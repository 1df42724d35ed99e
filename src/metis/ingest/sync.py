"""Provider usage sync: pull a credential's usage and costs day by day into the ledger.

Unit of work: one UTC day window ``[d, d+1)`` of one credential. For each
window every page of every stream (usage and costs) is fetched first; only
when all of them arrived are the records written, together with the window's
bookkeeping, in ONE transaction:

- `metis.ledger.upsert.upsert_usage` (replays are no-ops, revisions replace),
- removal of records of that credential and window that the provider no
  longer reports (e.g. a cost-only record that now matches a usage row),
- the ``sync_windows`` row (this window was fetched whole, at ``completed_at``)
  and the credential's cursor in ``sync_cursors`` (``complete_through`` = end
  of the latest window fetched after it ended, ``last_success_at``). A day
  fetched while still in progress (``completed_at`` before its end) is a lower
  bound, not complete: it does not move ``complete_through``, and the
  reconciled view flags it ``provider_lagging``.

A failed window (after retries, `metis.ingest.providers.http`) writes
nothing: the run stops there, the cursor stays where it was, and the error is
stored on the cursor (``metis ingest status``). Windows are walked oldest
first so the cursor only moves forward over complete windows.

Which windows: ``sync`` re-fetches the last ``days`` days (default 2: today's
and yesterday's buckets still change) and, when the cursor is older, every
day since the cursor (up to `MAX_CATCHUP_DAYS`). ``backfill`` walks the last
``days`` days and skips days that are already *settled* (a window completed
at least `SETTLE` after it ended is final), so an interrupted backfill
resumes where it stopped; ``refetch=True`` fetches them anyway.

One lease per credential (`metis.ingest.lease`) keeps two workers (processes,
hosts) from syncing the same credential at once: the loser records a
``skipped`` run. Every run writes an ``ingest_runs`` row and an
``ingest.run_completed`` event, logs JSON lines, and counts Prometheus metrics.
"""

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.engine import Connection

from metis.alerts.engine import on_sync_run_finished
from metis.config import Settings
from metis.credentials import Credential, list_credentials, reveal_secret
from metis.db.tables import ingest_runs, sync_cursors, sync_windows, usage_records
from metis.errors import MetisError, NotFoundError
from metis.events import IngestRunCompleted, append_event
from metis.ids import new_id
from metis.ingest import lease, metrics
from metis.ingest.log import forget_secret, get_logger, register_secret
from metis.ingest.providers.base import SOURCE, PriceResult, UsageItem, assemble
from metis.ingest.providers.registry import client_for, provider_api
from metis.ingest.settings import IngestSettings, get_ingest_settings
from metis.ledger import rollups
from metis.ledger.upsert import upsert_usage
from metis.pricing import price
from metis.timeutil import day_window, iso, utcnow
from metis.workspaces import get_workspace

CURSOR_STREAM = "usage"
SETTLE = timedelta(days=2)
MAX_CATCHUP_DAYS = 31
LEASE_PREFIX = "ingest:credential:"


@dataclass
class WindowOutcome:
    """What happened to one day window."""

    day: date
    status: str  # ok | skipped | failed | not_attempted
    pages: int = 0
    stored: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    cost_only: int = 0
    cost_unallocated: int = 0
    error: str | None = None


@dataclass
class RunOutcome:
    """One run of one credential (the ``ingest_runs`` row)."""

    run_id: str
    credential_id: str
    workspace_id: str
    provider: str
    kind: str
    status: str = "running"  # ok | failed | skipped
    window_start: datetime | None = None
    window_end: datetime | None = None
    pages: int = 0
    stored: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    errors: int = 0
    removed: int = 0
    requests: int = 0
    retries: int = 0
    duration_ms: int = 0
    error_message: str | None = None
    unpriced_models: set[str] = field(default_factory=set)
    windows: list[WindowOutcome] = field(default_factory=list)


OnWindow = Callable[[Credential, WindowOutcome], None]


def price_item(provider: str) -> Callable[[UsageItem], PriceResult]:
    """The computed-cost function handed to `assemble` (genai-prices via `metis.pricing`)."""

    def fn(u: UsageItem) -> PriceResult:
        model = u.model_raw or "unknown"
        try:
            p = price(
                provider,
                model,
                input_tokens=u.input_tokens,
                output_tokens=u.output_tokens,
                cached_input_tokens=u.cached_input_tokens,
                cache_creation_input_tokens=u.cache_creation_input_tokens,
                at=u.bucket_start,
            )
        except ValueError:
            return PriceResult(None, None, model.lower())
        return PriceResult(p.cost_nanousd, p.pricing_version, p.model_normalized)

    return fn


def _today(now: datetime) -> date:
    return now.astimezone(UTC).date()


def _cursor(conn: Connection, credential_id: str) -> Any:
    return (
        conn.execute(
            select(sync_cursors).where(
                sync_cursors.c.credential_id == credential_id,
                sync_cursors.c.stream == CURSOR_STREAM,
            )
        )
        .mappings()
        .first()
    )


def plan_days(
    engine: Engine,
    cred: Credential,
    *,
    kind: str,
    days: int,
    now: datetime,
    refetch: bool = False,
) -> tuple[list[date], set[date]]:
    """(days to walk oldest first, the subset to skip as settled)."""
    today = _today(now)
    first = today - timedelta(days=days - 1)
    with engine.connect() as conn:
        cur = _cursor(conn, cred.id)
        done = {
            r.window_start.date(): r.completed_at
            for r in conn.execute(
                select(sync_windows.c.window_start, sync_windows.c.completed_at).where(
                    sync_windows.c.credential_id == cred.id,
                    sync_windows.c.window_start >= day_window(first)[0],
                )
            )
        }
    if kind == "sync" and cur is not None and cur["complete_through"] is not None:
        # Catch up on days since the cursor, but only up to MAX_CATCHUP_DAYS back
        # (older gaps are a backfill's job); an explicit longer --days still counts.
        resume = cur["complete_through"].date()
        first = min(first, max(resume, today - timedelta(days=MAX_CATCHUP_DAYS - 1)))
    walk = [first + timedelta(days=i) for i in range((today - first).days + 1)]
    skip: set[date] = set()
    if kind == "backfill" and not refetch:
        for d in walk:
            completed = done.get(d)
            if completed is not None and completed >= day_window(d)[1] + SETTLE:
                skip.add(d)
    return walk, skip


def _delete_stale(
    conn: Connection, cred: Credential, start: datetime, end: datetime, keep: set[str]
) -> int:
    """Remove this window's records of ``cred`` that the provider no longer reports."""
    rows = (
        conn.execute(
            select(usage_records).where(
                usage_records.c.workspace_id == cred.workspace_id,
                usage_records.c.source == SOURCE,
                usage_records.c.source_ref == cred.id,
                usage_records.c.window_start >= start,
                usage_records.c.window_start < end,
            )
        )
        .mappings()
        .all()
    )
    stale = [r for r in rows if r["dedupe_key"] not in keep]
    if not stale:
        return 0
    deltas: dict[rollups.Key, list[int]] = {}
    for r in stale:
        k, vec = rollups.contribution(r)
        rollups.add(deltas, k, vec, -1)
    conn.execute(delete(usage_records).where(usage_records.c.id.in_([r["id"] for r in stale])))
    rollups.apply_deltas(conn, deltas)
    return len(stale)


def _set_cursor(conn: Connection, cred_id: str, **values: Any) -> None:
    values["updated_at"] = utcnow()
    res = conn.execute(
        update(sync_cursors)
        .where(sync_cursors.c.credential_id == cred_id, sync_cursors.c.stream == CURSOR_STREAM)
        .values(**values)
    )
    if res.rowcount == 0:
        conn.execute(
            sync_cursors.insert().values(credential_id=cred_id, stream=CURSOR_STREAM, **values)
        )


def _commit_window(
    engine: Engine, cred: Credential, run_id: str, start: datetime, end: datetime, records: Any
) -> tuple[int, int, int, int]:
    with engine.begin() as conn:
        counts = upsert_usage(conn, records)
        removed = _delete_stale(conn, cred, start, end, {r.dedupe_key for r in records})
        now = utcnow()
        res = conn.execute(
            update(sync_windows)
            .where(sync_windows.c.credential_id == cred.id, sync_windows.c.window_start == start)
            .values(window_end=end, completed_at=now, run_id=run_id, records=len(records))
        )
        if res.rowcount == 0:
            conn.execute(
                sync_windows.insert().values(
                    credential_id=cred.id,
                    window_start=start,
                    window_end=end,
                    completed_at=now,
                    run_id=run_id,
                    records=len(records),
                )
            )
        cur = _cursor(conn, cred.id)
        # A day still in progress is never complete: only a window fetched after
        # it ended moves the cursor (a value past now was written before issue 18).
        through: datetime | None = end if now >= end else None
        prev = cur["complete_through"] if cur is not None else None
        if prev is not None and prev <= now:
            through = prev if through is None else max(through, prev)
        _set_cursor(conn, cred.id, complete_through=through, last_success_at=now)
    return counts.inserted, counts.updated, counts.unchanged, removed


def _start_run(engine: Engine, out: RunOutcome, started: datetime, status: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            ingest_runs.insert().values(
                id=out.run_id,
                credential_id=out.credential_id,
                workspace_id=out.workspace_id,
                kind=out.kind,
                window_start=out.window_start,
                window_end=out.window_end,
                started_at=started,
                status=status,
            )
        )


def _finish_run(engine: Engine, out: RunOutcome) -> None:
    details = {
        "provider": out.provider,
        "removed": out.removed,
        "requests": out.requests,
        "retries": out.retries,
        "unpriced_models": sorted(out.unpriced_models),
        "windows": [
            {
                "day": w.day.isoformat(),
                "status": w.status,
                "pages": w.pages,
                "stored": w.stored,
                "updated": w.updated,
                "unchanged": w.unchanged,
                "removed": w.removed,
                "cost_only": w.cost_only,
                "cost_unallocated": w.cost_unallocated,
                **({"error": w.error} if w.error else {}),
            }
            for w in out.windows
        ],
    }
    with engine.begin() as conn:
        conn.execute(
            update(ingest_runs)
            .where(ingest_runs.c.id == out.run_id)
            .values(
                finished_at=utcnow(),
                status=out.status,
                pages=out.pages,
                stored=out.stored,
                updated=out.updated,
                unchanged=out.unchanged,
                skipped=out.skipped,
                errors=out.errors,
                error_message=out.error_message,
                duration_ms=out.duration_ms,
                details=details,
            )
        )
        if out.status == "failed":
            _set_cursor(
                conn, out.credential_id, last_error=out.error_message, last_error_at=utcnow()
            )
        elif out.status == "ok":
            _set_cursor(conn, out.credential_id, last_error=None, last_error_at=None)
        append_event(
            conn,
            IngestRunCompleted(
                run_id=out.run_id,
                credential_id=out.credential_id,
                provider=out.provider,
                kind=out.kind,
                status=out.status,
                window_start=iso(out.window_start) if out.window_start else None,
                window_end=iso(out.window_end) if out.window_end else None,
                pages=out.pages,
                stored=out.stored,
                updated=out.updated,
                unchanged=out.unchanged,
                skipped=out.skipped,
                errors=out.errors,
                duration_ms=out.duration_ms,
            ),
            workspace_id=out.workspace_id,
        )


def _abandon_stale_runs(engine: Engine, cred_id: str, run_id: str) -> None:
    """Runs left 'running' by a worker that died (we hold the lease now)."""
    with engine.begin() as conn:
        conn.execute(
            update(ingest_runs)
            .where(
                ingest_runs.c.credential_id == cred_id,
                ingest_runs.c.status == "running",
                ingest_runs.c.id != run_id,
            )
            .values(
                status="abandoned",
                finished_at=utcnow(),
                error_message="the worker stopped before finishing (no window was half-written)",
            )
        )


async def sync_credential(
    engine: Engine,
    settings: Settings,
    cred: Credential,
    *,
    kind: str = "sync",
    days: int | None = None,
    refetch: bool = False,
    ingest_settings: IngestSettings | None = None,
    on_window: OnWindow | None = None,
    now: datetime | None = None,
) -> RunOutcome:
    """Run one credential's sync or backfill (see module doc); never raises for provider errors."""
    ing = ingest_settings or get_ingest_settings()
    now = now or utcnow()
    log = get_logger().bind(credential_id=cred.id, provider=cred.provider, kind=kind)
    n_days = days if days is not None else ing.ingest_default_days
    if n_days < 1:
        raise MetisError("--days must be at least 1")
    out = RunOutcome(new_id("run"), cred.id, cred.workspace_id, cred.provider, kind)
    walk, skip = plan_days(engine, cred, kind=kind, days=n_days, now=now, refetch=refetch)
    out.window_start, out.window_end = day_window(walk[0])[0], day_window(walk[-1])[1]
    t0 = time.monotonic()
    started = utcnow()
    holder = lease.new_holder()
    lname = LEASE_PREFIX + cred.id
    other = lease.acquire(engine, lname, holder, ing.ingest_lease_seconds)
    if other is not None:
        out.status = "skipped"
        out.skipped = len(walk)
        out.error_message = f"another worker holds the sync lease ({other.split(':')[0]})"
        _start_run(engine, out, started, "running")
        _finish_run(engine, out)
        metrics.RUNS.labels(cred.provider, kind, "skipped").inc()
        log.info("ingest.run_skipped", run_id=out.run_id, reason="lease held")
        return out
    secret: str | None = None
    try:
        _start_run(engine, out, started, "running")
        _abandon_stale_runs(engine, cred.id, out.run_id)
        api = provider_api(cred.provider)
        with engine.connect() as conn:
            secret = reveal_secret(conn, settings, cred.id)
        register_secret(secret)
        log.info("ingest.run_started", run_id=out.run_id, days=len(walk))
        async with client_for(cred, secret, ing) as http:
            pricer = price_item(cred.provider)
            failed = False
            for d in walk:
                w = WindowOutcome(d, "skipped")
                out.windows.append(w)
                if failed:
                    w.status = "not_attempted"
                    continue
                if d in skip:
                    out.skipped += 1
                    if on_window:
                        on_window(cred, w)
                    continue
                start, end = day_window(d)
                try:
                    usage, costs, pages = await api.fetch_window(http, start, end)
                    w.pages = pages
                    records, st = assemble(
                        credential_id=cred.id,
                        workspace_id=cred.workspace_id,
                        provider=cred.provider,
                        usage=usage,
                        costs=costs,
                        price=pricer,
                        run_id=out.run_id,
                        base_url=cred.base_url,
                    )
                    w.stored, w.updated, w.unchanged, w.removed = _commit_window(
                        engine, cred, out.run_id, start, end, records
                    )
                except (MetisError, KeyError, TypeError, ValueError, AttributeError) as exc:
                    # MetisError: provider/HTTP failure after retries; the others: a
                    # response that does not have the documented shape.
                    msg = (
                        exc.message
                        if isinstance(exc, MetisError)
                        else f"unexpected response shape ({type(exc).__name__}: {exc})"
                    )
                    failed = True
                    w.status, w.error = "failed", msg
                    out.errors += 1
                    out.error_message = f"window {d.isoformat()}: {msg}"
                    log.warning(
                        "ingest.window_failed",
                        run_id=out.run_id,
                        day=d.isoformat(),
                        error=msg,
                    )
                    if on_window:
                        on_window(cred, w)
                    continue
                w.status, w.cost_only = "ok", st.cost_only_records
                w.cost_unallocated = st.cost_unallocated
                out.pages += w.pages
                out.stored += w.stored
                out.updated += w.updated
                out.unchanged += w.unchanged
                out.removed += w.removed
                out.unpriced_models |= st.unpriced_models
                metrics.PAGES.labels(cred.provider).inc(w.pages)
                for k in ("stored", "updated", "unchanged", "removed"):
                    metrics.RECORDS.labels(cred.provider, k).inc(getattr(w, k))
                if st.unpriced_models:
                    metrics.UNPRICED.labels(cred.provider).inc(len(st.unpriced_models))
                    log.warning(
                        "ingest.unpriced_models",
                        run_id=out.run_id,
                        day=d.isoformat(),
                        models=sorted(st.unpriced_models),
                    )
                log.info(
                    "ingest.window_committed",
                    run_id=out.run_id,
                    day=d.isoformat(),
                    pages=w.pages,
                    stored=w.stored,
                    updated=w.updated,
                    unchanged=w.unchanged,
                    removed=w.removed,
                )
                if on_window:
                    on_window(cred, w)
                if not lease.renew(engine, lname, holder, ing.ingest_lease_seconds):
                    failed = True
                    out.errors += 1
                    out.error_message = "lost the sync lease to another worker; stopped"
            out.requests, out.retries = http.stats.requests, http.stats.retries
        out.status = "failed" if out.errors else "ok"
    except MetisError as exc:
        out.status, out.errors = "failed", out.errors + 1
        out.error_message = exc.message
        log.error("ingest.run_failed", run_id=out.run_id, error=exc.message)
    finally:
        if out.status == "running":  # an unexpected error escaped: never leave it running
            out.status, out.errors = "failed", out.errors + 1
            out.error_message = out.error_message or "internal error (see the log)"
        if secret is not None:
            forget_secret(secret)
            del secret
        out.duration_ms = int((time.monotonic() - t0) * 1000)
        try:
            _finish_run(engine, out)
        finally:
            lease.release(engine, lname, holder)
    # Alerts (issue 12): failure / recovery / slow-run alerts; never raises.
    on_sync_run_finished(out.run_id, engine=engine, settings=settings)
    metrics.RUNS.labels(cred.provider, kind, out.status).inc()
    metrics.REQUESTS.labels(cred.provider).inc(out.requests)
    metrics.RETRIES.labels(cred.provider).inc(out.retries)
    metrics.DURATION.labels(cred.provider, kind).observe(out.duration_ms / 1000)
    log.info(
        "ingest.run_completed",
        run_id=out.run_id,
        status=out.status,
        pages=out.pages,
        stored=out.stored,
        updated=out.updated,
        unchanged=out.unchanged,
        skipped=out.skipped,
        errors=out.errors,
        duration_ms=out.duration_ms,
        error=out.error_message,
    )
    return out


def select_credentials(
    engine: Engine, *, workspace: str | None = None, credential: str | None = None
) -> list[Credential]:
    """Active ``usage_admin`` credentials, optionally of one workspace or one id."""
    with engine.connect() as conn:
        ws_id = get_workspace(conn, workspace).id if workspace else None
        creds = list_credentials(conn, workspace_id=ws_id, purpose="usage_admin")
    if credential is not None:
        creds = [c for c in creds if c.id == credential]
        if not creds:
            raise NotFoundError(
                f"no active usage_admin credential {credential!r}"
                + (f" in workspace {workspace!r}" if workspace else "")
                + " (see `metis provider-key list`)"
            )
    return creds


async def sync_many(
    engine: Engine,
    settings: Settings,
    creds: Sequence[Credential],
    **kw: Any,
) -> list[RunOutcome]:
    """`sync_credential` for each credential in turn."""
    return [await sync_credential(engine, settings, c, **kw) for c in creds]


def run_sync(
    engine: Engine,
    settings: Settings,
    *,
    workspace: str | None = None,
    credential: str | None = None,
    **kw: Any,
) -> list[RunOutcome]:
    """Synchronous entry (CLI, scheduler thread, cron): select credentials and sync them."""
    creds = select_credentials(engine, workspace=workspace, credential=credential)
    return asyncio.run(sync_many(engine, settings, creds, **kw))
