"""Golden OTLP payloads (tests/fixtures/otel, see its README) and helpers to decode them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from metis.ingest.otel import codec
from metis.ingest.otel.records import LogEvent, SpanEvent, log_events, spans

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "otel"
CLAUDE = FIXTURES / "claude_code"
CODEX = FIXTURES / "codex"
GENAI = FIXTURES / "genai"


def read(path: Path) -> bytes:
    return path.read_bytes()


def decoded(signal: codec.Signal, path: Path) -> Any:
    """The fixture as its ``Export*ServiceRequest`` (JSON or protobuf by file suffix)."""
    enc: codec.Encoding = "json" if path.suffix == ".json" else "protobuf"
    return codec.decode(signal, path.read_bytes(), enc)


def as_protobuf(signal: codec.Signal, path: Path) -> bytes:
    """A JSON fixture re-encoded as binary protobuf (the same message)."""
    return bytes(decoded(signal, path).SerializeToString())


def log_events_of(path: Path) -> list[LogEvent]:
    return list(log_events(decoded("logs", path)))


def spans_of(path: Path) -> list[SpanEvent]:
    return list(spans(decoded("traces", path)))
