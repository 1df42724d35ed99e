"""OTLP/HTTP wire format: decoding (protobuf, JSON with hex ids, gzip) and answers."""

from __future__ import annotations

import gzip
import json

import pytest
from google.protobuf import json_format
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)

from metis.ingest.otel import codec
from tests.ingest.otel.fixtures import CLAUDE, GENAI


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("application/x-protobuf", "protobuf"),
        ("application/json", "json"),
        ("Application/JSON; charset=utf-8", "json"),
        ("text/plain", None),
        ("application/grpc", None),
        ("", None),
        (None, None),
    ],
)
def test_encoding_of(header: str | None, expected: str | None) -> None:
    assert codec.encoding_of(header) == expected


def test_json_trace_and_span_ids_are_hex() -> None:
    req = codec.decode("traces", (GENAI / "semconv_traces.json").read_bytes(), "json")
    span = req.resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id.hex() == "5b8efff798038103d269b633813fc60c"
    assert span.span_id.hex() == "eee19b7ec3c1b174"
    assert span.kind == 1  # enums as integers


def test_json_and_protobuf_fixtures_decode_to_their_records() -> None:
    js = codec.decode("logs", (CLAUDE / "logs.json").read_bytes(), "json")
    pb = codec.decode("logs", (CLAUDE / "logs.pb").read_bytes(), "protobuf")
    for req in (js, pb):
        recs = req.resource_logs[0].scope_logs[0].log_records
        assert [r.body.string_value for r in recs][1] == "claude_code.api_request"
    again = codec.decode("logs", js.SerializeToString(), "protobuf")
    assert again == js


def test_unknown_json_fields_are_ignored() -> None:
    body = json.dumps(
        {"resourceLogs": [{"futureField": 1, "scopeLogs": [{"logRecords": [{"x": {}}]}]}]}
    ).encode()
    req = codec.decode("logs", body, "json")
    assert len(req.resource_logs[0].scope_logs[0].log_records) == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "malformed JSON"),
        (b"[]", "must be an object"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}', "hex"),
        (b'{"resourceSpans": 5}', "invalid OTLP JSON"),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}',
            "invalid",
        ),
        (b"[" * 5000 + b"]" * 5000, "JSON"),  # msgspec: too deep
        (b'{"a":' * 200 + b"1" + b"}" * 200, "nested deeper"),
    ],
)
def test_bad_json_is_bad_payload(body: bytes, message: str) -> None:
    with pytest.raises(codec.BadPayload, match=message):
        codec.decode("traces", body, "json")


def test_truncated_protobuf_is_bad_payload() -> None:
    whole = (CLAUDE / "logs.pb").read_bytes()
    with pytest.raises(codec.BadPayload, match="invalid protobuf"):
        codec.decode("logs", whole[: len(whole) // 2], "protobuf")
    with pytest.raises(codec.BadPayload):
        codec.decode("logs", b"\x0a\xff\xff\xff\xff\x0f", "protobuf")


def test_gunzip_limits_and_errors() -> None:
    data = b"x" * 10_000
    assert codec.gunzip(gzip.compress(data), 10_000) == data
    with pytest.raises(codec.TooLarge):
        codec.gunzip(gzip.compress(data), 9_999)
    bomb = gzip.compress(b"\0" * (50 * 1024 * 1024))
    assert len(bomb) < 100_000
    with pytest.raises(codec.TooLarge):
        codec.gunzip(bomb, 1024 * 1024)
    with pytest.raises(codec.BadPayload, match="invalid gzip"):
        codec.gunzip(b"not gzip at all", 1000)
    with pytest.raises(codec.BadPayload, match="truncated"):
        codec.gunzip(gzip.compress(data)[:-12], 100_000)


def test_success_answers() -> None:
    assert codec.success("logs", "protobuf") == b""
    assert json.loads(codec.success("logs", "json")) == {}
    resp = ExportLogsServiceResponse()
    resp.ParseFromString(codec.success("logs", "protobuf", 2, "2 rejected: no model"))
    assert resp.partial_success.rejected_log_records == 2
    assert resp.partial_success.error_message == "2 rejected: no model"
    tr = json.loads(codec.success("traces", "json", 1, "why"))
    assert tr == {"partialSuccess": {"rejectedSpans": "1", "errorMessage": "why"}}
    json_format.Parse(codec.success("traces", "json", 1, "why"), ExportTraceServiceResponse())


def test_status_answers_carry_a_bad_request_detail() -> None:
    st = status_pb2.Status()
    st.ParseFromString(codec.status(400, "bad body", "protobuf", field="body"))
    assert st.code == 3 and st.message == "bad body"
    br = error_details_pb2.BadRequest()
    assert st.details[0].Unpack(br)
    assert br.field_violations[0].field == "body"
    js = json.loads(codec.status(401, "no token", "json"))
    assert js == {"code": 16, "message": "no token"}
