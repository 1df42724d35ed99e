"""Structured JSON log lines for ingestion, with secrets redacted.

`get_logger` returns a structlog logger writing one JSON object per line to
stderr, independent of any global structlog configuration. A redaction
processor drops values of secret-looking keys (``secret``, ``token``,
``api_key``, ``authorization``, ``password``, ``x-api-key``) and replaces any
registered secret value (`register_secret`) wherever it appears in a string.
"""

import logging
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


def _level() -> int:
    try:
        from metis.config import get_settings

        return int(logging.getLevelName(get_settings().log_level))
    except Exception:  # a bad setting is reported elsewhere; log at INFO meanwhile
        return logging.INFO


def get_logger(stream: TextIO | None = None) -> Any:
    """A JSON-lines logger for ingestion (stderr by default), filtered by ``METIS_LOG_LEVEL``."""
    return structlog.wrap_logger(
        structlog.PrintLogger(stream or sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(_level()),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.JSONRenderer(sort_keys=True),
        ],
    ).bind(logger="metis.ingest")
