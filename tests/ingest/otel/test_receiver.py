"""The OTLP/HTTP receiver over real HTTP: what it stores and how it answers (OTLP spec)."""

from __future__ import annotations

import copy
import gzip
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from sqlalchemy import select

from metis.db.engine import make_engine
from metis.db.tables import ingest_activity
from metis.ingest import tokens
from metis.util.server_thread import free_port
from tests.ingest.otel.conftest import JSON, PB, Otlp
from tests.ingest.otel.fixtures import CLAUDE, CODEX, GENAI, as_protobuf


def _status(r: httpx.Response) -> Any:
    """The google.rpc.Status of an error answer, in the answer's encoding."""
    if r.headers["content-type"].startswith(PB):
        st = status_pb2.Status()
        st.ParseFromString(r.content)
        return st
    return json.loads(r.content)


def _activity(o: Otlp) -> dict[str, Any]:
    with o.engine.connect() as c:
        rows = c.execute(select(ingest_activity)).mappings().all()
    return {r["channel"]: r for r in rows}


def test_both_encodings_store_claude_code_calls_once(otlp: Otlp) -> None:
    r = otlp.post("logs", (CLAUDE / "logs.json").read_bytes(), JSON)
    assert r.status_code == 200 and r.headers["content-type"] == JSON
    assert r.json() == {}  # full success: partial_success unset
    r = otlp.post("logs", (CLAUDE / "logs.pb").read_bytes(), PB)
    assert r.status_code == 200 and r.headers["content-type"] == PB and r.content == b""
    rows = otlp.rows("claude_code")
    assert len(rows) == 2
    assert {r["source_ref"] for r in rows} == {otlp.token_id}
    assert all(r["cost_source"] == "computed" and r["cost_nanousd"] == 38_643_750 for r in rows)
    before = [(r["dedupe_key"], r["revision"], r["content_sha256"]) for r in rows]
    # A re-sent batch (an exporter retry), gzipped this time, changes nothing.
    r = otlp.post(
        "logs", gzip.compress((CLAUDE / "logs.pb").read_bytes()), PB, **{"content-encoding": "gzip"}
    )
    assert r.status_code == 200
    r = otlp.post("logs", (CLAUDE / "logs.json").read_bytes(), JSON)
    assert r.status_code == 200
    after = [(r["dedupe_key"], r["revision"], r["content_sha256"]) for r in otlp.rows()]
    assert after == before
    act = _activity(otlp)["otel_logs"]
    assert act["requests"] == 4 and act["records"] == 12 and act["accepted"] == 4
    assert act["rejected"] == 0


def test_metrics_are_accepted_and_never_spend(otlp: Otlp) -> None:
    for name, ct in (("metrics.json", JSON), ("metrics.pb", PB)):
        r = otlp.post("metrics", (CLAUDE / name).read_bytes(), ct)
        assert r.status_code == 200, r.content
    assert otlp.rows() == []
    act = _activity(otlp)["otel_metrics"]
    assert act["requests"] == 2 and act["records"] > 0 and act["accepted"] == 0


def test_traces_and_codex_logs(otlp: Otlp) -> None:
    r = otlp.post("traces", (GENAI / "openai_v2_traces.pb").read_bytes(), PB)
    assert r.status_code == 200
    r = otlp.post("traces", (GENAI / "semconv_traces.json").read_bytes(), JSON)
    assert r.status_code == 200 and r.json() == {}
    assert len(otlp.rows("otel_genai")) == 3 + 4
    r = otlp.post("logs", as_protobuf("logs", CODEX / "logs.json"), PB)
    assert r.status_code == 200
    assert len(otlp.rows("codex")) == 2


def _claude_with_a_bad_record() -> bytes:
    doc = json.loads((CLAUDE / "logs.json").read_text())
    recs = doc["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
    bad = copy.deepcopy(recs[1])
    bad["attributes"] = [
        (
            {"key": "request_id", "value": {"stringValue": "req_other"}}
            if a["key"] == "request_id"
            else a
        )
        for a in bad["attributes"]
        if a["key"] != "model"
    ]
    neg = copy.deepcopy(recs[1])
    for a in neg["attributes"]:
        if a["key"] == "request_id":
            a["value"] = {"stringValue": "req_negative"}
        if a["key"] == "output_tokens":
            a["value"] = {"intValue": "-4"}
    recs.extend([bad, neg])
    return json.dumps(doc).encode()


def test_partial_success_counts_rejected_usage_records(otlp: Otlp) -> None:
    body = _claude_with_a_bad_record()
    r = otlp.post("logs", body, JSON)
    assert r.status_code == 200
    part = r.json()["partialSuccess"]
    assert part["rejectedLogRecords"] == "2"  # int64 as a JSON string
    assert "without model" in part["errorMessage"] and "negative" in part["errorMessage"]
    assert [r["dedupe_key"] for r in otlp.rows()] == ["claude_code:req_01kf17AYQC5sGUKPmiicQYLJ"]
    r = otlp.post("logs", as_protobuf("logs", CLAUDE / "logs.json") + b"", PB)
    assert r.status_code == 200
    resp = ExportLogsServiceResponse()
    r = otlp.post("logs", _pb_of(body), PB)
    resp.ParseFromString(r.content)
    assert resp.partial_success.rejected_log_records == 2
    assert _activity(otlp)["otel_logs"]["rejected"] == 4


def _pb_of(json_body: bytes) -> bytes:
    from metis.ingest.otel import codec

    return bytes(codec.decode("logs", json_body, "json").SerializeToString())


def test_bad_payloads_get_400_with_a_status(otlp: Otlp) -> None:
    whole = (CLAUDE / "logs.pb").read_bytes()
    r = otlp.post("logs", whole[: len(whole) // 2], PB)
    assert r.status_code == 400 and r.headers["content-type"] == PB
    st = _status(r)
    assert "invalid protobuf" in st.message
    br = error_details_pb2.BadRequest()
    assert st.details[0].Unpack(br) and br.field_violations[0].field == "body"
    r = otlp.post("logs", b'{"resourceLogs": [', JSON)
    assert r.status_code == 400 and "malformed JSON" in _status(r)["message"]
    r = otlp.post("traces", b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"spanId":"xyz"}]}]}]}')
    assert r.status_code == 400 and "hex" in _status(r)["message"]
    r = otlp.post("logs", b"\x1f\x8b garbage", PB, **{"content-encoding": "gzip"})
    assert r.status_code == 400 and "gzip" in _status(r).message
    assert otlp.rows() == []


def test_auth_content_type_and_encoding(otlp: Otlp) -> None:
    body = (CLAUDE / "logs.json").read_bytes()
    for tok in ("", "mit_not-a-token", "gw_wrong-kind"):
        r = otlp.post("logs", body, JSON, token=tok)
        assert r.status_code == 401, tok
        assert r.headers["www-authenticate"] == "Bearer"
        assert _status(r)["code"] == 16
    with otlp.engine.begin() as c:
        tokens.revoke_token(c, otlp.token_id)
    r = otlp.post("logs", body, JSON)
    assert r.status_code == 401 and "revoked" in _status(r)["message"]
    _, live = otlp.token_for("other")
    r = otlp.post("logs", body, "text/plain", token=live)
    assert r.status_code == 415 and "Content-Type" in _status(r)["message"]
    r = otlp.post("logs", body, JSON, token=live, **{"content-encoding": "br"})
    assert r.status_code == 415 and "Content-Encoding" in _status(r)["message"]
    r = httpx.get(otlp.url + "/otel/v1/logs")
    assert r.status_code == 405
    assert otlp.rows() == []


def test_huge_batches_get_413(otlp: Otlp) -> None:
    url, _ = otlp.start(METIS_OTEL_MAX_BODY_BYTES="4096")
    big = (GENAI / "semconv_traces.json").read_bytes()  # ~9.5 KB
    assert len(big) > 4096
    r = otlp.post("traces", big, JSON, url=url)
    assert r.status_code == 413 and "4096" in _status(r)["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while streaming
        for i in range(0, len(big), 1000):
            yield big[i : i + 1000]

    r = httpx.post(
        url + "/otel/v1/traces",
        content=chunks(),
        headers={"content-type": JSON, "authorization": f"Bearer {otlp.token}"},
    )
    assert r.status_code == 413
    # Small on the wire, over the limit once decompressed.
    r = otlp.post("traces", gzip.compress(big), JSON, url=url, **{"content-encoding": "gzip"})
    assert r.status_code == 413 and "decompressed" in _status(r)["message"]
    assert otlp.rows() == []


def _wait(pred: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_busy_receiver_answers_429_with_retry_after(otlp: Otlp) -> None:
    url, app = otlp.start(METIS_OTEL_MAX_CONCURRENCY="1")
    receiver = app.components.api.state.metis_otel
    release = threading.Event()
    body = (CLAUDE / "logs.json").read_bytes()
    first: dict[str, httpx.Response] = {}

    def slow_body() -> Iterator[bytes]:
        yield body[:100]
        release.wait(30)
        yield body[100:]

    def send() -> None:
        first["r"] = httpx.post(
            url + "/otel/v1/logs",
            content=slow_body(),
            headers={"content-type": JSON, "authorization": f"Bearer {otlp.token}"},
            timeout=60,
        )

    t = threading.Thread(target=send)
    t.start()
    try:
        _wait(lambda: receiver.in_flight == 1)
        r = otlp.post("logs", body, JSON, url=url)
        assert r.status_code == 429
        assert r.headers["retry-after"] == "1"
        assert _status(r)["code"] == 8
    finally:
        release.set()
        t.join(30)
    assert first["r"].status_code == 200
    assert len(otlp.rows("claude_code")) == 1  # the held request completed; the refused one not


def test_database_unavailable_gets_503_with_retry_after(otlp: Otlp) -> None:
    """The database goes away after startup (server-wide outages: tests/reliability)."""
    dead = f"postgresql+psycopg://metis@127.0.0.1:{free_port()}/nothing?connect_timeout=2"
    api = otlp.app.components.api
    assert otlp.post("metrics", (CLAUDE / "metrics.json").read_bytes()).status_code == 200
    live = api.state.metis_engine
    api.state.metis_engine = make_engine(dead)
    try:
        r = otlp.post("logs", as_protobuf("logs", CLAUDE / "logs.json"), PB)
    finally:
        api.state.metis_engine.dispose()
        api.state.metis_engine = live
    assert r.status_code == 503
    assert r.headers["retry-after"] == "5"
    st = _status(r)
    assert st.code == 14 and "database is unavailable" in st.message
    assert "127.0.0.1" not in st.message  # the driver's text stays in the log
    assert otlp.rows() == []
    r = otlp.post("logs", as_protobuf("logs", CLAUDE / "logs.json"), PB)  # back: stored
    assert r.status_code == 200 and len(otlp.rows()) == 1
