"""``metis alerts test|status|run`` against a live receiver."""

import json
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine

from metis.alerts.engine import AlertEngine, budget_alert
from metis.alerts.rules import load_config
from metis.config import get_settings
from metis.util.server_thread import free_port
from tests.alerts.conftest import Sinks
from tests.conftest import Cli


def test_alerts_test_reaches_every_sink(cli: type[Cli], sinks: Sinks) -> None:
    out = cli.ok("alerts", "test").stdout
    assert "webhook: ok" in out and "slack: ok" in out and "log: written to stderr" in out
    (hook,) = sinks.receiver.at("/hook")
    assert hook.signature_ok(sinks.secret)
    assert hook.json["kind"] == "test" and hook.json["test"] is True
    (slack,) = sinks.receiver.at("/slack")
    assert slack.json["text"].startswith("[TEST] Metis")


def test_alerts_test_reports_failures(cli: type[Cli], sinks: Sinks) -> None:
    sinks.receiver.fail_with = 503
    r = cli.run("alerts", "test")
    assert r.exit_code == 1
    assert "webhook: FAILED (webhook: HTTP 503)" in r.stdout
    assert "error: 2 of 2 alert sinks failed" in r.stderr


def test_alerts_test_without_sinks_says_what_to_configure(
    cli: type[Cli], fast_alerts: None
) -> None:
    r = cli.run("alerts", "test")
    assert r.exit_code == 1 and r.stdout == ""  # no "log: ok" before the error
    assert r.stderr.startswith("error: no alert sink to test: alerts fire, but they are only ")
    for needle in ("METIS_ALERT_WEBHOOK_URL=", "METIS_ALERT_SLACK_WEBHOOK_URL=", "alerts.yaml"):
        assert needle in r.stderr
    assert "Traceback" not in r.output


def test_status_shows_pending_with_last_error_then_delivered(
    cli: type[Cli], sinks: Sinks, engine: Engine
) -> None:
    sinks.receiver.fail_with = 500
    eng = AlertEngine(engine, load_config(get_settings()))
    with engine.begin() as c:
        eng.fire(c, budget_alert("team_daily", "team_1", "2026-11-22", 80, 8, 10))
    cli.ok("alerts", "run")
    st = json.loads(cli.ok("alerts", "status", "--json").stdout)
    assert st["sinks"] == ["log", "webhook", "slack"]
    assert {(o["sink"], o["status"], o["attempts"]) for o in st["open"]} == {
        ("webhook", "pending", 1),
        ("slack", "pending", 1),
    }
    assert {o["last_error"] for o in st["open"]} == {"webhook: HTTP 500", "slack: HTTP 500"}
    assert [a["kind"] for a in st["firing"]] == ["budget_threshold"]
    table = cli.ok("alerts", "status").stdout
    assert "pending and failed deliveries" in table and "firing alerts" in table

    sinks.receiver.fail_with = None
    time.sleep(0.3)  # past the (test-sized) backoff
    cli.ok("alerts", "run")
    st = json.loads(cli.ok("alerts", "status", "--json").stdout)
    assert st["open"] == []
    assert {(c["sink"], c["status"], c["count"]) for c in st["counts"]} == {
        ("webhook", "delivered", 1),
        ("slack", "delivered", 1),
    }


def test_deliveries_give_up_after_max_attempts(
    cli: type[Cli],
    fast_alerts: None,
    engine: Engine,
    metis_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    p = Path(metis_env["METIS_HOME"]) / "alerts.yaml"
    p.write_text(p.read_text().replace("delivery:\n", "delivery:\n  max_attempts: 2\n"))
    monkeypatch.setenv("METIS_ALERT_WEBHOOK_URL", f"http://127.0.0.1:{free_port()}/down")
    eng = AlertEngine(engine, load_config(get_settings()))
    with engine.begin() as c:
        eng.fire(c, budget_alert("key_daily", "key_1", "2026-11-22", 95, 95, 100))
    for _ in range(2):
        cli.ok("alerts", "run")
        time.sleep(0.1)
    st = json.loads(cli.ok("alerts", "status", "--json").stdout)
    assert [(o["status"], o["attempts"], o["last_error"]) for o in st["open"]] == [
        ("failed", 2, "webhook: ConnectError")
    ]
