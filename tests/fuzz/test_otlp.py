"""Fuzzing the OTLP receiver: decoder, mappers and the HTTP answers.

Whatever the bytes, `metis.ingest.otel.codec.decode` returns the signal's
message or raises `BadPayload` (a 400), and a decoded message goes through
the mappers and the push path without raising: each record is stored,
ignored or counted as rejected. Over HTTP no body, encoding or header gets a
5xx. Seeds are the golden fixtures (tests/fixtures/otel): truncated,
bit-flipped and spliced protobuf, and JSON documents with parts replaced by
hostile values.
"""

from __future__ import annotations

import copy
import gzip
import json
from typing import Any

import httpx
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select

from metis.db.tables import usage_records, workspaces
from metis.ingest import tokens
from metis.ingest.otel import codec, receiver
from metis.workspaces import add_workspace
from tests.fuzz.conftest import SeededServer
from tests.fuzz.hostile import deep_json, mutated
from tests.fuzz.settings import fuzz_settings
from tests.ingest.otel.fixtures import CLAUDE, CODEX, GENAI, as_protobuf

PB_SEEDS: list[tuple[codec.Signal, bytes]] = [
    ("logs", (CLAUDE / "logs.pb").read_bytes()),
    ("metrics", (CLAUDE / "metrics.pb").read_bytes()),
    ("traces", (GENAI / "openai_v2_traces.pb").read_bytes()),
    ("logs", as_protobuf("logs", CODEX / "logs.json")),
    ("traces", as_protobuf("traces", GENAI / "semconv_traces.json")),
]
JSON_SEEDS: list[tuple[codec.Signal, Any]] = [
    ("logs", json.loads((CLAUDE / "logs.json").read_text())),
    ("logs", json.loads((CODEX / "logs.json").read_text())),
    ("traces", json.loads((GENAI / "semconv_traces.json").read_text())),
    ("metrics", json.loads((CLAUDE / "metrics.json").read_text())),
]
INT64 = 2**63 - 1


@st.composite
def damaged_protobuf(draw: st.DrawFn) -> tuple[codec.Signal, bytes]:
    """A fixture's bytes truncated, with bytes flipped, or with random bytes spliced in."""
    signal, data = draw(st.sampled_from(PB_SEEDS))
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["truncate", "flip", "splice"]))
        i = draw(st.integers(0, max(len(buf) - 1, 0)))
        if op == "truncate":
            del buf[i:]
        elif op == "flip" and buf:
            buf[i] ^= draw(st.integers(1, 255))
        else:
            buf[i:i] = draw(st.binary(min_size=1, max_size=16))
    return draw(st.sampled_from([signal, "logs", "traces", "metrics"])), bytes(buf)


def _json_bytes(doc: Any) -> bytes:
    return json.dumps(doc, default=str).encode()  # ensure_ascii: any str encodes


@st.composite
def damaged_json(draw: st.DrawFn) -> tuple[codec.Signal, bytes]:
    signal, doc = draw(st.sampled_from(JSON_SEEDS))
    return signal, _json_bytes(draw(mutated(doc, max_mutations=4)))


def _decode(signal: codec.Signal, body: bytes, enc: codec.Encoding) -> Any:
    try:
        return codec.decode(signal, body, enc)
    except codec.BadPayload as exc:
        assert str(exc)
        return None


@given(st.one_of(damaged_protobuf(), st.tuples(st.sampled_from(["logs"]), st.binary())))
@fuzz_settings(400)
def test_protobuf_decoder_returns_a_message_or_bad_payload(case: tuple[Any, bytes]) -> None:
    signal, body = case
    _decode(signal, body, "protobuf")


@given(st.one_of(damaged_json(), st.tuples(st.sampled_from(["traces"]), st.binary())))
@fuzz_settings(300)
def test_json_decoder_returns_a_message_or_bad_payload(case: tuple[Any, bytes]) -> None:
    signal, body = case
    _decode(signal, body, "json")


def _token(engine: Engine) -> tokens.IngestToken:
    with engine.begin() as conn:
        wid = conn.execute(select(workspaces.c.id).where(workspaces.c.name == "ws-otel")).scalar()
        ws = str(wid) if wid else add_workspace(conn, "ws-otel").id
        tok, _ = tokens.create_token(conn, ws, "fuzz", "otel")
    return tok


@given(st.one_of(damaged_json(), damaged_protobuf()))
@fuzz_settings(150, deadline_ms=5000)
def test_decoded_messages_are_stored_ignored_or_rejected(engine: Engine, case: Any) -> None:
    signal, body = case
    req = _decode(signal, body, "json" if body[:1] == b"{" else "protobuf")
    if req is None:
        return
    out = receiver.process(engine, _token(engine), signal, req)
    assert out.accepted + out.rejected <= out.records
    assert all(isinstance(r, str) and r for r in out.reasons)
    with engine.connect() as conn:
        worst = conn.execute(
            select(
                func.max(usage_records.c.cost_nanousd),
                func.min(usage_records.c.input_tokens),
                func.min(usage_records.c.output_tokens),
            )
        ).one()
    if worst[0] is not None:
        assert worst[0] <= INT64 and worst[1] >= 0 and worst[2] >= 0


def _post(srv: SeededServer, signal: str, body: Any, **headers: str) -> httpx.Response:
    h = {"authorization": f"Bearer {srv.ingest_token}", **headers}
    return httpx.post(f"{srv.url}/otel/v1/{signal}", content=body, headers=h, timeout=30)


@given(
    case=st.one_of(damaged_json(), damaged_protobuf()),
    ct=st.sampled_from(["application/json", "application/x-protobuf", "text/plain", ""]),
    gz=st.booleans(),
)
@fuzz_settings(60, deadline_ms=10_000)
def test_http_never_answers_5xx(seeded_server: SeededServer, case: Any, ct: str, gz: bool) -> None:
    signal, body = case
    headers = {"content-type": ct} if ct else {}
    if gz:
        body, headers["content-encoding"] = gzip.compress(body), "gzip"
    r = _post(seeded_server, signal, body, **headers)
    assert r.status_code in (200, 400, 413, 415), (r.status_code, r.content[:300])
    if r.status_code != 200:
        assert r.content  # a google.rpc.Status


def test_http_hostile_classics(seeded_server: SeededServer) -> None:
    js = {"content-type": "application/json"}
    pb = {"content-type": "application/x-protobuf"}
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024))
    cases: list[tuple[bytes, dict[str, str], int]] = [
        (deep_json(100_000), js, 400),
        (b'{"resourceLogs": ' + b"[" * 2000 + b"]" * 2000 + b"}", js, 400),
        (b"\xff" * 1000, pb, 400),
        (bomb, {**pb, "content-encoding": "gzip"}, 413),
        (b"x" * (9 * 1024 * 1024), pb, 413),
        (_json_bytes({"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {}}] * 5000}]}]}),
         js, 200),
        (_json_bytes(copy.deepcopy(JSON_SEEDS[0][1])) + b"trailing", js, 400),
    ]  # fmt: skip
    for body, headers, status in cases:
        r = _post(seeded_server, "logs", body, **headers)
        assert r.status_code == status, (status, r.status_code, r.content[:200])
    # Every attribute value a hostile client could send, on a Claude Code api_request.
    doc = JSON_SEEDS[0][1]
    for value in [
        {"intValue": "9" * 40},
        {"intValue": "-5"},
        {"stringValue": "1e400"},
        {"boolValue": True},
        {"bytesValue": "AAAA"},
        None,
        {},
        {"doubleValue": "NaN"},
        {"stringValue": "\ud800"},
        {"arrayValue": {"values": [{"kvlistValue": {"values": []}}]}},
    ]:
        d = copy.deepcopy(doc)
        rec = d["resourceLogs"][0]["scopeLogs"][0]["logRecords"][1]
        rec["attributes"].append({"key": "input_tokens", "value": value})
        r = _post(seeded_server, "logs", _json_bytes(d), **js)
        assert r.status_code in (200, 400), (value, r.status_code, r.content[:200])
