"""Periodic rules: unpriced models and reconciliation drift / unattributed share."""

import logging
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from metis.alerts.engine import AlertEngine
from metis.alerts.rules import load_config
from metis.config import get_settings
from metis.db.engine import make_engine
from metis.db.tables import events
from metis.ledger.upsert import upsert_usage
from metis.timeutil import utcnow
from tests.alerts.helpers import covered, record, workspace

USD = 1_000_000_000


def _fired(engine: Engine) -> list[dict]:
    with engine.connect() as c:
        return [
            p
            for (p,) in c.execute(
                select(events.c.payload).where(events.c.type == "alert.fired").order_by(events.c.id)
            )
        ]


def test_unpriced_model_fires_once_per_model_and_day(engine: Engine, fast_alerts: None) -> None:
    today = utcnow().date()
    with engine.begin() as c:
        workspace(c)
        upsert_usage(
            c,
            [
                record(today, 0, model="mystery-1", cost_source="none"),
                record(today, 0, model="mystery-1", cost_source="none"),
                record(today, 5, model="gpt-4o"),
            ],
        )
    eng = AlertEngine(engine, load_config(get_settings()))
    assert eng.evaluate(ledger_scans=True) == 1
    with engine.begin() as c:
        upsert_usage(c, [record(today, 0, model="mystery-1", cost_source="none")])
    assert eng.evaluate(ledger_scans=True) == 0
    (p,) = _fired(engine)
    assert p["kind"] == "unpriced_model" and p["scope_id"] == "openai/mystery-1"
    assert p["value"] == "2" and p["period"] == today.isoformat()


def test_unpriced_rule_can_be_switched_off_per_workspace(
    engine: Engine, metis_env: dict[str, str], fast_alerts: None
) -> None:
    p = Path(metis_env["METIS_HOME"]) / "alerts.yaml"
    p.write_text(p.read_text() + "workspaces:\n  acme:\n    unpriced_models: false\n")
    today = utcnow().date()
    with engine.begin() as c:
        workspace(c)
        upsert_usage(c, [record(today, 0, model="mystery-1", cost_source="none")])
    assert AlertEngine(engine, load_config(get_settings())).evaluate(ledger_scans=True) == 0


def test_reconciliation_drift_and_unattributed_cells(engine: Engine, fast_alerts: None) -> None:
    today = utcnow().date()
    d1, d2, d3 = (today - timedelta(days=i) for i in (1, 2, 3))
    with engine.begin() as c:
        workspace(c)
        covered(c, [d1, d2, d3])
        upsert_usage(
            c,
            [
                # d1: attributed $12 > provider $10 -> drift 20%
                record(d1, 10 * USD, source="provider_api_key", granularity="1d"),
                record(d1, 12 * USD),
                # d2: provider $10, attributed $2 -> 80% unattributed (default threshold 50%)
                record(d2, 10 * USD, source="provider_api_key", granularity="1d"),
                record(d2, 2 * USD),
                # d3: provider $10, attributed $9.95 -> within thresholds
                record(d3, 10 * USD, source="provider_api_key", granularity="1d"),
                record(d3, 9_950_000_000),
            ],
        )
    eng = AlertEngine(engine, load_config(get_settings()))
    assert eng.evaluate(ledger_scans=True) == 2
    assert eng.evaluate(ledger_scans=True) == 0
    got = {(p["kind"], p["period"], p["value"]) for p in _fired(engine)}
    assert got == {
        ("reconciliation_drift", d1.isoformat(), "20.00"),
        ("reconciliation_unattributed", d2.isoformat(), "80.00"),
    }


def test_drift_that_estimated_gateway_calls_explain_does_not_fire(
    engine: Engine, fast_alerts: None
) -> None:
    """Worst-case estimates (cost_source estimated, issue 19 item 5) are upper bounds the
    provider's figure replaces: only drift they cannot explain fires."""
    today = utcnow().date()
    d1, d2 = (today - timedelta(days=i) for i in (1, 2))
    with engine.begin() as c:
        workspace(c)
        covered(c, [d1, d2])
        upsert_usage(
            c,
            [
                # d1: provider $10; $9.90 billed + a $3 estimate -> 29% over, all explained
                record(d1, 10 * USD, source="provider_api_key", granularity="1d"),
                record(d1, 9_900_000_000),
                record(d1, 3 * USD, cost_source="estimated"),
                # d2: provider $10; $12 billed + a $3 estimate -> 20% drift remains
                record(d2, 10 * USD, source="provider_api_key", granularity="1d"),
                record(d2, 12 * USD),
                record(d2, 3 * USD, cost_source="estimated"),
            ],
        )
    eng = AlertEngine(engine, load_config(get_settings()))
    assert eng.evaluate(ledger_scans=True) == 1
    got = [(p["kind"], p["period"], p["value"]) for p in _fired(engine)]
    assert got == [("reconciliation_drift", d2.isoformat(), "20.00")]


def test_ledger_scans_run_at_their_own_cadence(engine: Engine, fast_alerts: None) -> None:
    today = utcnow().date()
    with engine.begin() as c:
        workspace(c)
    eng = AlertEngine(engine, load_config(get_settings()))
    t0 = utcnow()
    assert eng.evaluate(t0) == 0  # first pass scans (nothing to find yet)
    with engine.begin() as c:
        upsert_usage(c, [record(today, 0, model="mystery-2", cost_source="none")])
    assert eng.evaluate(t0 + timedelta(seconds=60)) == 0  # scan not due yet
    assert eng.evaluate(t0 + timedelta(seconds=600)) == 1  # due: found


def test_database_unavailable_step_is_one_line_and_retried(
    tmp_path: Path, fast_alerts: None, caplog: pytest.LogCaptureFixture
) -> None:
    """A busy/locked or unreachable database skips the step with one warning (no
    traceback in the log); the next tick runs it again."""
    gone = tmp_path / "gone"
    dead = make_engine(f"sqlite:///{gone / 'metis.db'}")
    shutil.rmtree(gone)  # every connection fails with OperationalError
    caplog.set_level(logging.WARNING, "metis.alerts")
    assert AlertEngine(dead, load_config(get_settings())).evaluate(ledger_scans=True) == 0
    recs = [r for r in caplog.records if r.name == "metis.alerts"]
    assert len(recs) == 5 and all(r.exc_info is None for r in recs), recs  # one per step
    assert "database unavailable (OperationalError)" in recs[0].getMessage()
