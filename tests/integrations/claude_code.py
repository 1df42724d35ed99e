"""Run the real Claude Code CLI (npm ``@anthropic-ai/claude-code``, pinned) in tests.

The CLI comes from tests/clients/claude-code (package.json + lock, version
2.1.332), installed by ``scripts/claude-code.sh`` (run by ``scripts/test.sh``,
so CI has it); ``METIS_CLAUDE_CODE_BIN`` names the binary, else the installed
one is used. `claude_bin` returns None when neither exists (the caller skips
and says so).

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

ROOT = Path(__file__).resolve().parents[2]
VERSION = "2.1.332"
INSTALLED = ROOT / "tests" / "clients" / "claude-code" / "node_modules" / ".bin" / "claude"


def claude_bin() -> str | None:
    """The pinned ``claude`` binary, or None when it is not installed."""
    env = os.environ.get("METIS_CLAUDE_CODE_BIN")
    for cand in [env] if env else [str(INSTALLED)]:
        if not cand or not Path(cand).exists():
            continue
        r = subprocess.run([cand, "--version"], capture_output=True, text=True, timeout=60)
        if r.returncode == 0 and r.stdout.startswith(VERSION):
            return cand
    return None


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
