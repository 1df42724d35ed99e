"""Sync jobs as the scheduler and the cron trigger run them (in a worker thread)."""

from typing import Any

from sqlalchemy import Engine

from metis.config import Settings
from metis.errors import MetisError
from metis.ingest.log import get_logger
from metis.ingest.sync import RunOutcome, run_sync


def run_job(
    engine: Engine, settings: Settings, *, name: str, reraise: bool = False, **kw: Any
) -> list[RunOutcome]:
    """Run a sync over all usage_admin credentials; log and swallow user errors.

    Each credential is isolated: its own lease, run row and event, so one bad
    key never stops the others. Returns the outcomes (empty on a setup error,
    e.g. an unknown workspace, which is re-raised with ``reraise`` so a caller
    that took the names from a request can answer 4xx).
    """
    log = get_logger().bind(job=name)
    try:
        outcomes = run_sync(engine, settings, **kw)
    except MetisError as exc:
        log.error("ingest.job_failed", error=exc.message)
        if reraise:
            raise
        return []
    log.info(
        "ingest.job_completed",
        runs=len(outcomes),
        failed=sum(1 for o in outcomes if o.status == "failed"),
        skipped=sum(1 for o in outcomes if o.status == "skipped"),
    )
    return outcomes
