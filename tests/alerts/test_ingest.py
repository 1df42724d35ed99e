"""Ingestion alerts: a failing sync alerts once, recovery is reported; slow and stale runs."""

from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, insert, select

from metis.alerts.engine import AlertEngine, on_sync_run_finished
from metis.alerts.rules import load_config
from metis.config import get_settings
from metis.db.engine import make_engine
from metis.db.tables import alert_state, events, ingest_runs, provider_credentials
from metis.timeutil import utcnow
from tests.alerts.conftest import Sinks
from tests.conftest import Cli
from tests.plugins.simulator import Simulator, SimulatorFactory


def _sim_credential(cli: type[Cli], sim: Simulator) -> str:
    cli.ok("workspace", "add", "acme")
    out = cli.ok(
        "provider-key", "add", "-w", "acme", "--provider", "openai",
        "--purpose", "usage_admin", "--base-url", sim.url,
        input=sim.openai_admin_key,
    ).stdout  # fmt: skip
    return next(w for w in out.split() if w.startswith("cred_")).rstrip(":")


def test_failing_sync_alerts_once_and_reports_recovery(
    cli: type[Cli], sinks: Sinks, simulator_factory: SimulatorFactory, fast_ingest: None
) -> None:
    sim = simulator_factory(seed=3, history_days=1)
    cred = _sim_credential(cli, sim)
    sim.set_fault("/v1/organization/costs", "503", count=None)  # the simulator's fault injection
    for _ in range(2):  # two failed runs in a row: one alert
        assert cli.run("ingest", "sync", "--days", "1").exit_code == 1
    cli.ok("alerts", "run")
    hooks = sinks.receiver.at("/hook")
    assert [(p.json["kind"], p.json["state"]) for p in hooks] == [("sync_failed", "firing")]
    body = hooks[0].json
    assert body["scope"] == "credential" and body["scope_id"] == cred
    assert "503" in body["message"] and sim.openai_admin_key not in hooks[0].body.decode()
    assert hooks[0].signature_ok(sinks.secret)

    sim.clear_faults()
    cli.ok("ingest", "sync", "--days", "1")
    cli.ok("ingest", "sync", "--days", "1")  # a second success reports nothing new
    cli.ok("alerts", "run")
    hooks = sinks.receiver.at("/hook")
    assert [(p.json["kind"], p.json["state"]) for p in hooks] == [
        ("sync_failed", "firing"),
        ("sync_failed", "resolved"),
    ]
    assert "recovered" in hooks[1].json["message"]

    # A new failure after the recovery is a new crossing: it alerts again.
    sim.set_fault("/v1/organization/costs", "503", count=None)
    assert cli.run("ingest", "sync", "--days", "1").exit_code == 1
    cli.ok("alerts", "run")
    assert [p.json["state"] for p in sinks.receiver.at("/hook")] == [
        "firing",
        "resolved",
        "firing",
    ]


def _cred(engine: Engine, cid: str = "cred_1", ws: str = "ws_1", age_h: int = 100) -> str:
    from metis.db.tables import workspaces

    created = utcnow() - timedelta(hours=age_h)
    with engine.begin() as c:
        c.execute(insert(workspaces).values(id=ws, name="acme", created_at=created))
        c.execute(
            insert(provider_credentials).values(
                id=cid,
                workspace_id=ws,
                provider="openai",
                purpose_inference=False,
                purpose_usage_admin=True,
                mode="admin",
                secret_ref="env:NOPE",
                created_at=created,
            )
        )
    return cid


def _run(
    engine: Engine,
    status: str,
    finished_h_ago: float,
    duration_ms: int = 1000,
    now: datetime | None = None,
) -> dict:
    fin = (now or utcnow()) - timedelta(hours=finished_h_ago)
    row = {
        "id": f"run_{status}_{finished_h_ago}",
        "credential_id": "cred_1",
        "workspace_id": "ws_1",
        "kind": "sync",
        "started_at": fin - timedelta(milliseconds=duration_ms),
        "finished_at": fin,
        "status": status,
        "duration_ms": duration_ms,
        "error_message": None if status == "ok" else "HTTP 500 from provider",
    }
    with engine.begin() as c:
        c.execute(insert(ingest_runs).values(**row))
    return row


def _rules(metis_env: dict[str, str], text: str) -> None:
    p = Path(metis_env["METIS_HOME"]) / "alerts.yaml"
    p.write_text(p.read_text() + text)


def test_slow_run_alerts_once_per_day_with_workspace_override(
    engine: Engine, metis_env: dict[str, str], fast_alerts: None
) -> None:
    _cred(engine)
    _rules(metis_env, "workspaces:\n  acme:\n    sync_slow_after_seconds: 1\n")
    config = load_config(get_settings())
    assert config.rules_for("ws_1", "acme").sync_slow_after_seconds == 1
    assert config.rules_for("ws_other").sync_slow_after_seconds == 900
    # Overrides are keyed by name or id; the hook knows the id, so key it by id too.
    _rules(metis_env, "  ws_1:\n    sync_slow_after_seconds: 1\n")
    config = load_config(get_settings())
    # Both slow runs on one UTC day, also when the test runs just after midnight.
    now = max(utcnow(), utcnow().replace(hour=1, minute=0, second=0, microsecond=0))
    slow1 = on_sync_run_finished(_run(engine, "ok", 0.2, 2500, now), engine=engine, config=config)
    slow2 = on_sync_run_finished(_run(engine, "ok", 0.1, 3000, now), engine=engine, config=config)
    fast = on_sync_run_finished(_run(engine, "ok", 0.05, 500, now), engine=engine, config=config)
    assert len(slow1) == 1 and slow2 == [] and fast == []
    with engine.connect() as c:
        payload = c.execute(select(events.c.payload).where(events.c.type == "alert.fired")).scalar()
    assert payload["kind"] == "sync_slow" and payload["threshold"] == "1"


def test_no_successful_sync_for_too_long_fires_and_resolves(
    engine: Engine, fast_alerts: None
) -> None:
    _cred(engine)
    _run(engine, "ok", 30)  # last success 30 h ago (default threshold 26 h)
    config = load_config(get_settings())
    eng = AlertEngine(engine, config)
    assert eng.evaluate() == 1
    assert eng.evaluate() == 0  # still stale: nothing new
    with engine.connect() as c:
        st = c.execute(select(alert_state.c.kind, alert_state.c.status)).all()
    assert st == [("sync_stale", "firing")]
    # A successful run resolves it through the hook (once).
    assert len(on_sync_run_finished(_run(engine, "ok", 0), engine=engine, config=config)) == 1
    assert eng.evaluate() == 0
    with engine.connect() as c:
        st = c.execute(select(alert_state.c.kind, alert_state.c.status)).all()
        kinds = [
            (p["kind"], p["state"])
            for (p,) in c.execute(
                select(events.c.payload).where(events.c.type == "alert.fired").order_by(events.c.id)
            )
        ]
    assert st == [("sync_stale", "resolved")]
    assert kinds == [("sync_stale", "firing"), ("sync_stale", "resolved")]


def test_hook_never_raises(engine: Engine, fast_alerts: None, tmp_path: Path) -> None:
    assert on_sync_run_finished({"status": "failed"}, engine=engine) == []  # no credential
    assert on_sync_run_finished("run_missing", engine=engine) == []
    unmigrated = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")  # no tables: every query fails
    run = {"id": "run_1", "status": "failed", "credential_id": "cred_1"}
    assert on_sync_run_finished(run, engine=unmigrated) == []
    unmigrated.dispose()
