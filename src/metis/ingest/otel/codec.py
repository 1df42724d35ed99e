"""OTLP/HTTP wire format: request bodies in, responses and error statuses out.

The messages are the official ones (``opentelemetry-proto``); nothing here
parses protobuf by hand. Two encodings, chosen by ``Content-Type``
(OTLP specification, "OTLP/HTTP"):

- ``application/x-protobuf``: binary protobuf.
- ``application/json``: the proto3 JSON mapping with OTLP's deviations:
  ``traceId`` / ``spanId`` / ``parentSpanId`` are hex, not base64 (converted
  here before `google.protobuf.json_format.ParseDict`), enums are integers,
  unknown fields are ignored.

Responses use the request's encoding: an ``Export<Signal>ServiceResponse``
(with ``partial_success`` when some records were rejected) on success, a
``google.rpc.Status`` (with a ``google.rpc.BadRequest`` detail for bad data)
for every 4xx/5xx.

Everything that decoding untrusted bytes can raise is turned into `BadPayload`
here (the receiver answers 400); nothing else escapes.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
from google.protobuf import json_format
from google.protobuf.any_pb2 import Any as AnyPb
from google.protobuf.message import DecodeError, Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from metis.jsonutil import DECODE_ERRORS

Encoding = Literal["protobuf", "json"]
Signal = Literal["logs", "traces", "metrics"]

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
CONTENT_TYPES: dict[Encoding, str] = {"protobuf": PROTOBUF, "json": JSON}


@dataclass(frozen=True)
class SignalKind:
    """The request/response messages of one signal and its partial-success counter."""

    request: type[Message]
    response: type[Message]
    partial: str  # the response's partial_success message field counting rejections
    rejected_field: str


SIGNALS: dict[Signal, SignalKind] = {
    "logs": SignalKind(
        logs_service_pb2.ExportLogsServiceRequest,
        logs_service_pb2.ExportLogsServiceResponse,
        "partial_success",
        "rejected_log_records",
    ),
    "traces": SignalKind(
        trace_service_pb2.ExportTraceServiceRequest,
        trace_service_pb2.ExportTraceServiceResponse,
        "partial_success",
        "rejected_spans",
    ),
    "metrics": SignalKind(
        metrics_service_pb2.ExportMetricsServiceRequest,
        metrics_service_pb2.ExportMetricsServiceResponse,
        "partial_success",
        "rejected_data_points",
    ),
}


class BadPayload(ValueError):
    """The body cannot be decoded (answered ``400`` with this message)."""


class TooLarge(ValueError):
    """The body is over the limit once decompressed (answered ``413``)."""


def encoding_of(content_type: str | None) -> Encoding | None:
    """The encoding a ``Content-Type`` header names, or None when unsupported."""
    if not content_type:
        return None
    media = content_type.split(";", 1)[0].strip().lower()
    if media == PROTOBUF:
        return "protobuf"
    if media == JSON:
        return "json"
    return None


def gunzip(data: bytes, limit: int) -> bytes:
    """Decompress a gzip body, refusing more than ``limit`` bytes of output.

    A decompression bomb stops at ``limit + 1`` bytes (`TooLarge`); a corrupt or
    truncated stream is `BadPayload`.
    """
    d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(data, limit + 1)
        if len(out) > limit:
            raise TooLarge(f"body over {limit} bytes once decompressed")
        if d.unconsumed_tail:
            raise TooLarge(f"body over {limit} bytes once decompressed")
        out += d.flush()
    except zlib.error as exc:
        raise BadPayload(f"invalid gzip body: {exc}") from None
    if len(out) > limit:
        raise TooLarge(f"body over {limit} bytes once decompressed")
    if not d.eof:
        raise BadPayload("invalid gzip body: truncated stream")
    return out


_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})
_MAX_DEPTH = 64


def _hex_ids_to_base64(node: Any) -> None:
    """Rewrite OTLP/JSON's hex trace and span ids to the base64 ParseDict expects.

    Iterative (no recursion on hostile nesting); nesting deeper than
    `_MAX_DEPTH` is refused.
    """
    stack: list[tuple[Any, int]] = [(node, 0)]
    while stack:
        cur, depth = stack.pop()
        if depth > _MAX_DEPTH:
            raise BadPayload(f"JSON nested deeper than {_MAX_DEPTH} levels")
        if isinstance(cur, dict):
            for k, v in cur.items():
                if k in _ID_KEYS and isinstance(v, str):
                    try:
                        raw = bytes.fromhex(v)
                    except ValueError:
                        raise BadPayload(f"{k}: not a hex string") from None
                    cur[k] = base64.b64encode(raw).decode()
                elif isinstance(v, dict | list):
                    stack.append((v, depth + 1))
        elif isinstance(cur, list):
            stack.extend((v, depth + 1) for v in cur if isinstance(v, dict | list))


def decode(signal: Signal, body: bytes, encoding: Encoding) -> Message:
    """The ``Export<Signal>ServiceRequest`` in ``body``; `BadPayload` when it is not one."""
    msg = SIGNALS[signal].request()
    if encoding == "protobuf":
        try:
            msg.ParseFromString(body)
        except (DecodeError, RecursionError, ValueError) as exc:
            raise BadPayload(f"invalid protobuf {type(msg).__name__}: {exc}") from None
        return msg
    try:
        tree = msgspec.json.decode(body)
    except DECODE_ERRORS as exc:
        raise BadPayload(f"malformed JSON: {exc}") from None
    if not isinstance(tree, dict):
        raise BadPayload(f"JSON body must be an object ({type(msg).__name__})")
    _hex_ids_to_base64(tree)
    try:
        json_format.ParseDict(tree, msg, ignore_unknown_fields=True, max_recursion_depth=_MAX_DEPTH)
    except (
        json_format.ParseError,
        ValueError,
        TypeError,
        AttributeError,
        RecursionError,
        OverflowError,
        binascii.Error,
    ) as exc:
        raise BadPayload(f"invalid OTLP JSON {type(msg).__name__}: {_short(exc)}") from None
    return msg


def _short(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "…"


def _serialize(msg: Message, encoding: Encoding) -> bytes:
    if encoding == "protobuf":
        return msg.SerializeToString()
    return json_format.MessageToJson(msg, indent=None).encode()


def success(signal: Signal, encoding: Encoding, rejected: int = 0, message: str = "") -> bytes:
    """The success body: ``partial_success`` set only when something was rejected or said."""
    kind = SIGNALS[signal]
    resp = kind.response()
    if rejected or message:
        part = getattr(resp, kind.partial)
        setattr(part, kind.rejected_field, rejected)
        part.error_message = message
    return _serialize(resp, encoding)


_GRPC_CODES = {
    400: code_pb2.INVALID_ARGUMENT,
    401: code_pb2.UNAUTHENTICATED,
    404: code_pb2.NOT_FOUND,
    413: code_pb2.RESOURCE_EXHAUSTED,
    415: code_pb2.INVALID_ARGUMENT,
    429: code_pb2.RESOURCE_EXHAUSTED,
    503: code_pb2.UNAVAILABLE,
}


def status(http_status: int, message: str, encoding: Encoding, field: str | None = None) -> bytes:
    """A ``google.rpc.Status`` body for an error answer; ``field`` adds a BadRequest detail."""
    st = status_pb2.Status(code=_GRPC_CODES.get(http_status, code_pb2.UNKNOWN), message=message)
    if field is not None:
        br = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=field, description=message)
            ]
        )
        detail = AnyPb()
        detail.Pack(br)
        st.details.append(detail)
    return _serialize(st, encoding)
