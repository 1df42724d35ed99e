"""Run the real Claude Code CLI (npm ``@anthropic-ai/claude-code``, pinned) with telemetry on.

The CLI is the one pinned in tests/clients/node (installed by ``scripts/clients.sh``,
which ``make test`` and CI run); `claude_bin` fails the test when it is missing,
it never skips (tests/plugins/clients.py).

`run_claude` runs ``claude -p`` in a throwaway HOME with everything that would
reach the internet turned off (auto-updater, error reporting, non-essential
traffic) and OpenTelemetry export pointed at a Metis ``/otel`` endpoint.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from tests.plugins.clients import cli_binary


def claude_bin() -> str:
    """The pinned ``claude`` binary (a test failure when it is not installed)."""
    return str(cli_binary("claude"))


def run_claude(
    binary: str,
    home: Path,
    *,
    base_url: str,
    api_key: str,
    otel_endpoint: str,
    ingest_token: str,
    protocol: str,
    prompt: str = "say hi",
    model: str = "claude-haiku-4-5",
    resource_attributes: str | None = None,
) -> dict[str, Any]:
    """``claude -p PROMPT --output-format json`` exporting telemetry; returns its JSON result."""
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": api_key,
        # No traffic beyond the model calls: no updater, error reports, feature flags.
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_BUG_COMMAND": "1",
        # OpenTelemetry export to Metis.
        "CLAUDE_CODE_ENABLE_TELEMETRY": "1",
        "OTEL_LOGS_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_EXPORTER_OTLP_ENDPOINT": otel_endpoint,
        "OTEL_EXPORTER_OTLP_HEADERS": f"Authorization=Bearer {ingest_token}",
        "OTEL_LOGS_EXPORT_INTERVAL": "200",
        "OTEL_METRIC_EXPORT_INTERVAL": "500",
    }
    if resource_attributes:
        env["OTEL_RESOURCE_ATTRIBUTES"] = resource_attributes
    p = subprocess.run(
        [binary, "-p", prompt, "--model", model, "--output-format", "json"],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, (p.stdout[-2000:], p.stderr[-2000:])
    out: dict[str, Any] = json.loads(p.stdout)
    assert out.get("is_error") is False, out
    return out
