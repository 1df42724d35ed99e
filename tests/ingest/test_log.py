import io
import json

import pytest

from metis.ingest import log as ingest_log
from metis.ingest.log import forget_secret, get_logger, register_secret, use_cli_format


@pytest.fixture(autouse=True)
def _no_cli_choice() -> None:
    """Each test starts as a server process does: the settings decide the format."""
    ingest_log._cli_json = None
    yield
    ingest_log._cli_json = None


def _log_secret_things(log: object) -> None:
    register_secret("sk-admin-verysecret123")
    try:
        log.warning(  # type: ignore[attr-defined]
            "ingest.thing",
            api_key="sk-other",
            authorization="Bearer x",
            provider_api_key_id="key_abc",
            detail="provider said: bad key sk-admin-verysecret123",
            nested={"msg": ["sk-admin-verysecret123"]},
        )
    finally:
        forget_secret("sk-admin-verysecret123")


def test_json_lines_with_secrets_redacted() -> None:
    buf = io.StringIO()
    _log_secret_things(get_logger(buf, fmt="json"))
    line = json.loads(buf.getvalue())
    assert line["event"] == "ingest.thing" and line["level"] == "warning" and "timestamp" in line
    assert line["api_key"] == "[redacted]" and line["authorization"] == "[redacted]"
    assert line["provider_api_key_id"] == "key_abc"  # ids are not secrets
    assert "verysecret" not in buf.getvalue()


def test_human_lines_are_redacted_too() -> None:
    buf = io.StringIO()
    _log_secret_things(get_logger(buf, fmt="console"))
    out = buf.getvalue()
    assert out.startswith("warning: ingest.thing ") and out.count("\n") == 1
    assert "api_key=[redacted]" in out and "provider_api_key_id=key_abc" in out
    assert "verysecret" not in out and "Bearer" not in out and not out.startswith("{")


def test_format_follows_the_setting_then_the_cli_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("METIS_LOG_FORMAT", raising=False)
    monkeypatch.delenv("METIS_LOG_LEVEL", raising=False)
    assert ingest_log.log_format() == "console"  # the default: human
    monkeypatch.setenv("METIS_LOG_FORMAT", "json")
    assert ingest_log.log_format() == "json"
    monkeypatch.setenv("METIS_LOG_FORMAT", "console")
    use_cli_format(json_lines=True)  # --json
    assert ingest_log.log_format() == "json"
    # Without --json, a CLI shows human warnings and errors (its own summary says the rest)...
    use_cli_format(json_lines=False)
    buf = io.StringIO()
    log = get_logger(buf)
    log.info("ingest.run_started", run_id="run_1")
    log.warning("ingest.window_failed", day="2026-11-01")
    assert buf.getvalue() == "warning: ingest.window_failed day=2026-11-01\n"
    # ...and its info lines too when METIS_LOG_LEVEL asks for them.
    monkeypatch.setenv("METIS_LOG_LEVEL", "INFO")
    buf = io.StringIO()
    get_logger(buf).info("ingest.run_started", run_id="run_1")
    assert buf.getvalue() == "info: ingest.run_started run_id=run_1\n"
