"""Structured log lines for ingestion, with secrets redacted.

`get_logger` returns a structlog logger writing one line per event to
stderr, independent of any global structlog configuration: a JSON object
with ``METIS_LOG_FORMAT=json`` (for log shippers and journald), else a
human line (``warning: ingest.window_failed credential_id=… error=…``). The
CLI picks for its own run with `use_cli_format`: JSON lines only with
``--json`` or ``METIS_LOG_FORMAT=json``, and human lines (warnings and
errors, unless ``METIS_LOG_LEVEL`` is set) otherwise, so a terminal never
fills with JSON.

A redaction processor drops values of secret-looking keys (``secret``,
``token``, ``api_key``, ``authorization``, ``password``, ``x-api-key``) and
replaces any registered secret value (`register_secret`) wherever it appears
in a string, in both formats.
"""

import logging
import os
import re
import sys
import threading
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

_SECRET_KEYS = re.compile(r"(secret|token|api_key|apikey|authorization|password|x-api-key)", re.I)
_ALLOWED = frozenset({"api_key_id", "provider_api_key_id", "ingest_token_id"})
_secrets: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Remember a plaintext secret so it is scrubbed from every log line."""
    if value and len(value) >= 6:
        with _lock:
            _secrets.add(value)


def forget_secret(value: str) -> None:
    with _lock:
        _secrets.discard(value)


def _scrub(v: Any) -> Any:
    if isinstance(v, str):
        with _lock:
            known = list(_secrets)
        for s in known:
            if s in v:
                v = v.replace(s, "[redacted]")
        return v
    if isinstance(v, dict):
        return {k: _scrub(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_scrub(x) for x in v]
    return v


class RedactingFilter(logging.Filter):
    """stdlib logging filter: scrub registered secrets from a record's message.

    For third-party loggers that print what Metis handed them, e.g. httpx's
    ``HTTP Request: POST <url>`` line, where a Slack webhook URL is the secret.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        with _lock:
            empty = not _secrets
        if empty:
            return True
        try:
            msg = record.getMessage()
        except Exception:  # a malformed record is logging's problem, not ours
            return True
        clean = _scrub(msg)
        if clean != msg:
            record.msg, record.args = clean, None
        return True


_FILTER = RedactingFilter()


def redact_stdlib_logger(name: str) -> None:
    """Attach the redacting filter to logger ``name`` (idempotent)."""
    lg = logging.getLogger(name)
    if _FILTER not in lg.filters:
        lg.addFilter(_FILTER)


def redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: blank secret-looking keys, scrub known secret values."""
    for k in list(event):
        if k not in _ALLOWED and _SECRET_KEYS.search(k):
            event[k] = "[redacted]"
        else:
            event[k] = _scrub(event[k])
    return event


# The CLI's choice for this process (`use_cli_format`); None = the settings decide.
_cli_json: bool | None = None


def use_cli_format(*, json_lines: bool) -> None:
    """Set how this CLI process logs: JSON lines (``--json``) or the settings' choice.

    Without ``--json`` the format is JSON only when ``METIS_LOG_FORMAT=json``;
    human lines then show warnings and errors unless ``METIS_LOG_LEVEL`` is
    set (the command prints its own summary of what went right).
    """
    global _cli_json
    _cli_json = json_lines


def log_format() -> str:
    """``json`` or ``console`` for the next logger (see the module docstring)."""
    if _cli_json:
        return "json"
    try:
        from metis.config import get_settings

        return get_settings().log_format
    except Exception:  # a bad setting is reported elsewhere
        return "console"


def _level(fmt: str) -> int:
    if _cli_json is False and fmt == "console" and "METIS_LOG_LEVEL" not in os.environ:
        return logging.WARNING
    try:
        from metis.config import get_settings

        return int(logging.getLevelName(get_settings().log_level))
    except Exception:  # a bad setting is reported elsewhere; log at INFO meanwhile
        return logging.INFO


def human_line(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> str:
    """structlog renderer: ``level: event key=value …`` (no timestamp: a terminal has one)."""
    level = event.pop("level", "info")
    name = event.pop("event", "")
    for k in ("timestamp", "logger"):
        event.pop(k, None)
    rest = " ".join(f"{k}={v}" for k, v in sorted(event.items()))
    return f"{level}: {name}" + (f" {rest}" if rest else "")


def get_logger(stream: TextIO | None = None, fmt: str | None = None) -> Any:
    """A logger for ingestion (stderr by default), filtered by ``METIS_LOG_LEVEL``.

    ``fmt`` (``json`` or ``console``) defaults to `log_format`.
    """
    fmt = fmt or log_format()
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=True) if fmt == "json" else human_line
    )
    return structlog.wrap_logger(
        structlog.PrintLogger(stream or sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(_level(fmt)),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            renderer,
        ],
    ).bind(logger="metis.ingest")
