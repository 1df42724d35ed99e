"""``metis serve`` options that do not need a running server: ``--no-scheduler``."""

from typing import Any

import pytest
import uvicorn

from metis.server import create_app


def _startup_hooks() -> int:
    app: Any = create_app()
    return len(app.components.startup)


def test_no_scheduler_switches_the_sync_scheduler_off(
    cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METIS_INGEST_SCHEDULER", "true")  # restored at teardown
    with_scheduler = _startup_hooks()
    seen: dict[str, Any] = {}

    def fake_run(target: str, **kw: Any) -> None:
        # What the uvicorn workers would build from the factory.
        seen["target"], seen["kw"] = target, kw
        seen["hooks"] = _startup_hooks()

    monkeypatch.setattr(uvicorn, "run", fake_run)
    cli.ok("serve", "--port", "0", "--no-scheduler")
    assert seen["target"] == "metis.server:create_app" and seen["kw"]["factory"] is True
    assert seen["hooks"] == with_scheduler - 1


def test_scheduler_on_by_default(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METIS_INGEST_SCHEDULER", "true")
    seen: dict[str, int] = {}
    monkeypatch.setattr(uvicorn, "run", lambda target, **kw: seen.update(h=_startup_hooks()))
    cli.ok("serve", "--port", "0")
    assert seen["h"] == _startup_hooks()
    monkeypatch.setenv("METIS_INGEST_SCHEDULER", "false")
    assert seen["h"] == _startup_hooks() + 1
