"""Flat, read-only views of decoded OTLP log records and spans, for the mappers.

A mapper should not walk ``ResourceLogs → ScopeLogs → LogRecord`` nor unpack
``AnyValue`` oneofs: `log_events` and `spans` yield one `LogEvent` / `SpanEvent`
per record with its resource and scope, and attributes as plain Python values
(str, int, float, bool, bytes, lists and dicts of those). Later keys win when
an attribute is repeated.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

_MAX_VALUE_DEPTH = 16


def value(v: AnyValue, depth: int = 0) -> Any:
    """An ``AnyValue`` as a Python value (None when empty or nested too deep)."""
    kind = v.WhichOneof("value")
    if kind is None or depth > _MAX_VALUE_DEPTH:
        return None
    if kind == "array_value":
        return [value(x, depth + 1) for x in v.array_value.values]
    if kind == "kvlist_value":
        return attributes(v.kvlist_value.values, depth + 1)
    return getattr(v, kind)


def attributes(kvs: Any, depth: int = 0) -> dict[str, Any]:
    """Repeated ``KeyValue`` as a dict."""
    out: dict[str, Any] = {}
    kv: KeyValue
    for kv in kvs:
        out[kv.key] = value(kv.value, depth)
    return out


def nanos_to_datetime(nanos: int) -> datetime | None:
    """UTC datetime of a Unix-nanosecond timestamp (None for 0 or out of range)."""
    if nanos <= 0:
        return None
    try:
        return datetime.fromtimestamp(nanos // 1_000_000_000, UTC).replace(
            microsecond=(nanos % 1_000_000_000) // 1000
        )
    except (OverflowError, OSError, ValueError):
        return None


@dataclass(frozen=True)
class LogEvent:
    """One log record with the resource and scope it came in."""

    resource: Mapping[str, Any]
    scope_name: str
    body: Any
    event_name: str
    attributes: Mapping[str, Any]
    time_unix_nano: int
    observed_time_unix_nano: int
    digest: str  # SHA-256 of the record's deterministic protobuf bytes

    @property
    def time(self) -> datetime | None:
        """When it happened: the record's time, else when it was observed."""
        return nanos_to_datetime(self.time_unix_nano) or nanos_to_datetime(
            self.observed_time_unix_nano
        )


@dataclass(frozen=True)
class SpanEvent:
    """One span with the resource and scope it came in."""

    resource: Mapping[str, Any]
    scope_name: str
    name: str
    trace_id: str  # hex
    span_id: str  # hex
    start_time_unix_nano: int
    end_time_unix_nano: int
    attributes: Mapping[str, Any]
    status_code: int  # 0 unset, 1 ok, 2 error

    @property
    def time(self) -> datetime | None:
        return nanos_to_datetime(self.start_time_unix_nano) or nanos_to_datetime(
            self.end_time_unix_nano
        )


def log_events(req: ExportLogsServiceRequest) -> Iterator[LogEvent]:
    """Every log record of ``req``, in order."""
    for rl in req.resource_logs:
        res = attributes(rl.resource.attributes)
        for sl in rl.scope_logs:
            scope = sl.scope.name
            for rec in sl.log_records:
                yield LogEvent(
                    resource=res,
                    scope_name=scope,
                    body=value(rec.body),
                    event_name=rec.event_name,
                    attributes=attributes(rec.attributes),
                    time_unix_nano=rec.time_unix_nano,
                    observed_time_unix_nano=rec.observed_time_unix_nano,
                    digest=hashlib.sha256(rec.SerializeToString(deterministic=True)).hexdigest(),
                )


def spans(req: ExportTraceServiceRequest) -> Iterator[SpanEvent]:
    """Every span of ``req``, in order."""
    for rs in req.resource_spans:
        res = attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            scope = ss.scope.name
            for sp in ss.spans:
                yield SpanEvent(
                    resource=res,
                    scope_name=scope,
                    name=sp.name,
                    trace_id=sp.trace_id.hex(),
                    span_id=sp.span_id.hex(),
                    start_time_unix_nano=sp.start_time_unix_nano,
                    end_time_unix_nano=sp.end_time_unix_nano,
                    attributes=attributes(sp.attributes),
                    status_code=int(sp.status.code),
                )


def count_log_records(req: ExportLogsServiceRequest) -> int:
    return sum(len(sl.log_records) for rl in req.resource_logs for sl in rl.scope_logs)


def count_spans(req: ExportTraceServiceRequest) -> int:
    return sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)


def count_data_points(req: ExportMetricsServiceRequest) -> int:
    """Data points of every metric kind (what ``rejected_data_points`` counts)."""
    n = 0
    for rm in req.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                if kind is not None:
                    n += len(getattr(m, kind).data_points)
    return n
