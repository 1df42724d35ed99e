"""Metis plugin for Hermes Agent: every LLM call's token usage, pushed to Metis.

Hermes loads this through its ``hermes_agent.plugins`` entry point (or as a
directory plugin with ``plugin.yaml``) and calls `register`. Enable it with
``hermes plugins enable metis`` (``plugins.enabled`` in config.yaml).

Configuration (environment):

- ``METIS_INGEST_URL``: base URL of the Metis server (e.g. ``http://metis:8080``).
- ``METIS_INGEST_TOKEN``: an ingest token (``metis ingest token create``).
- ``METIS_USER`` (optional): a Metis user alias to attribute the usage to.
- ``METIS_SPOOL_DIR`` (optional): where undelivered batches wait
  (default ``$HERMES_HOME/metis-spool``, else ``~/.hermes/metis-spool``).
- ``METIS_BATCH_SIZE`` (100), ``METIS_FLUSH_INTERVAL`` seconds (2).

Without URL or token the plugin registers nothing and logs one warning.

Hooks: ``post_api_request`` (every main-loop provider call) and, on Hermes
versions that fire it, ``post_auxiliary_call`` (titling, compression, vision,
…). Each call becomes one usage item keyed by Hermes' ``api_request_id`` (or a
fresh id when Hermes gives none), in Metis's canonical token semantics: Hermes'
``input_tokens`` excludes cache reads/writes, Metis's includes them.
Hermes does not hand plugins the provider's response id, so ``correlation_id``
stays empty; ``base_url`` (where the call went) lets Metis recognise calls that
went through its own gateway. The callbacks never raise and never wait on the
network (`metis_hermes.sender`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .sender import Sender

__version__ = "0.1.0"
log = logging.getLogger("metis_hermes")

_sender: Sender | None = None


def _spool_dir() -> Path:
    if os.environ.get("METIS_SPOOL_DIR"):
        return Path(os.environ["METIS_SPOOL_DIR"]).expanduser()
    home = os.environ.get("HERMES_HOME") or str(Path.home() / ".hermes")
    return Path(home).expanduser() / "metis-spool"


def _int(v: Any) -> int:
    try:
        return max(0, int(v or 0))
    except (TypeError, ValueError):
        return 0


def _provider(provider: str | None, api_mode: str | None) -> str:
    p = (provider or "").strip().lower()
    if api_mode == "anthropic_messages" or p == "anthropic":
        return "anthropic"
    if p in ("", "custom", "openai", "openai-codex", "openai_compatible"):
        return "openai"  # OpenAI-shaped endpoint (a custom base_url speaks OpenAI's API)
    return p[:64]


def usage_item(hook: str, kw: dict[str, Any]) -> dict[str, Any] | None:
    """The Metis usage item for one Hermes hook call, or None when it carries no usage."""
    usage = kw.get("usage")
    if not isinstance(usage, dict) or kw.get("error"):
        return None
    cache_read = _int(usage.get("cache_read_tokens"))
    cache_write = _int(usage.get("cache_write_tokens"))
    input_total = _int(usage.get("input_tokens")) + cache_read + cache_write
    output = _int(usage.get("output_tokens"))
    reasoning = min(_int(usage.get("reasoning_tokens")), output)
    ended = kw.get("ended_at") or kw.get("started_at")
    try:
        when = datetime.fromtimestamp(float(ended), tz=timezone.utc)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        when = datetime.now(timezone.utc)
    rid = kw.get("api_request_id") or f"gen-{uuid.uuid4().hex}"
    session = str(kw.get("session_id") or "")
    # Hermes' api_request_id ("<turn id>:api:<n>") is unique per provider call.
    key = f"hermes:{rid}"
    if len(key) > 200 or not key.isascii() or any(c.isspace() for c in key):
        key = "hermes:sha256:" + hashlib.sha256(key.encode()).hexdigest()
    model = str(kw.get("response_model") or kw.get("model") or "unknown")
    item: dict[str, Any] = {
        "idempotency_key": key,
        "time": when.isoformat().replace("+00:00", "Z"),
        "provider": _provider(kw.get("provider"), kw.get("api_mode")),
        "model": model[:200],
        "input_tokens": input_total,
        "output_tokens": output,
        "cached_input_tokens": cache_read,
        "cache_creation_input_tokens": cache_write,
        "reasoning_tokens": reasoning,
        "request_count": 1,
        "metadata": {
            "hook": hook,
            "platform": str(kw.get("platform") or "")[:100] or None,
            "api_mode": str(kw.get("api_mode") or "")[:100] or None,
            "aux_task": str(kw.get("aux_task") or "")[:100] or None,
        },
    }
    if session:
        item["session_id"] = session[:200]
    if kw.get("base_url"):
        item["base_url"] = str(kw["base_url"])[:2000]
    if os.environ.get("METIS_USER"):
        item["user"] = os.environ["METIS_USER"][:200]
    return item


def _make_hook(name: str) -> Any:
    def hook(**kwargs: Any) -> None:
        try:
            item = usage_item(name, kwargs)
            if item is not None and _sender is not None:
                _sender.submit(item)
        except Exception:  # never break the agent
            log.debug("metis: could not record a usage item", exc_info=True)

    hook.__name__ = f"metis_{name}"
    return hook


def register(ctx: Any) -> None:
    """Hermes entry point: start the sender and register the usage hooks."""
    global _sender
    url = os.environ.get("METIS_INGEST_URL", "").strip()
    token = os.environ.get("METIS_INGEST_TOKEN", "").strip()
    if not url or not token:
        log.warning("metis plugin: METIS_INGEST_URL and METIS_INGEST_TOKEN are required; inactive")
        return
    if _sender is None:
        _sender = Sender(
            url,
            token,
            _spool_dir(),
            batch_size=_int(os.environ.get("METIS_BATCH_SIZE")) or 100,
            flush_interval=float(os.environ.get("METIS_FLUSH_INTERVAL") or 2.0),
        )
    ctx.register_hook("post_api_request", _make_hook("post_api_request"))
    try:
        from hermes_cli.plugins import VALID_HOOKS

        known = "post_auxiliary_call" in VALID_HOOKS
    except Exception:
        known = False
    if known:  # older Hermes (e.g. 0.19) does not fire auxiliary-call hooks
        ctx.register_hook("post_auxiliary_call", _make_hook("post_auxiliary_call"))


def sender() -> Sender | None:
    """The running sender (for tests and diagnostics)."""
    return _sender
