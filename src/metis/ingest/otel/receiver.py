"""The OTLP/HTTP receiver of ``metis serve``: ``POST /otel/v1/{logs,traces,metrics}``.

Clients set ``OTEL_EXPORTER_OTLP_ENDPOINT=http://metis:8080/otel`` (the
exporters append ``/v1/logs`` etc.) and
``OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer mit_…`` (an ingest token,
`metis.ingest.tokens`). Answers follow the OTLP specification ("OTLP/HTTP
Response"), in the request's encoding:

- ``200`` with an ``Export<Signal>ServiceResponse``; when some records were
  usage records Metis could not use, ``partial_success`` carries how many
  (``rejected_log_records`` / ``rejected_spans``) and why. Records that carry
  no usage (prompts, tool spans, …) are not rejections: they are ignored.
- ``400`` (``google.rpc.Status`` with a ``BadRequest`` detail): the body is
  not the signal's message (truncated protobuf, malformed JSON, bad hex id).
- ``401``: no, unknown or revoked ingest token. ``413``: body over
  ``METIS_OTEL_MAX_BODY_BYTES`` (8 MiB), compressed or not.
  ``415``: a ``Content-Type`` other than ``application/x-protobuf`` /
  ``application/json``, or a ``Content-Encoding`` other than ``gzip``.
- ``429`` + ``Retry-After``: more than ``METIS_OTEL_MAX_CONCURRENCY`` requests
  in progress. ``503`` + ``Retry-After``: the database cannot take writes
  (down, read-only, full); nothing of the request was stored.

Logs and traces are mapped (`metis.ingest.otel.claude_code`, ``codex``,
``genai``) to usage items and handed to the push path
(`metis.ingest.push.ingest_items`): same validation, same idempotency (a
re-sent batch changes nothing), same reconciliation classes. Each item is
stored under its mapper's ``source`` with ``source_ref`` = the token id and
the token's ``via_gateway`` / ``user`` settings. Metrics are accepted and
counted (the ingestion page's "last data seen") but never turned into
spend: their counters are sums over the same calls the events report, so
they would count every call twice.

A request is stored whole or not at all (one transaction per request).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError

from metis.analytics.deps import EngineDep
from metis.ingest import activity
from metis.ingest import tokens as ingest_tokens
from metis.ingest.otel import claude_code, codec, codex, genai, identity
from metis.ingest.otel.codec import BadPayload, Encoding, Signal, TooLarge
from metis.ingest.otel.mapping import Mapped, MappingError
from metis.ingest.otel.records import (
    LogEvent,
    SpanEvent,
    count_data_points,
    count_log_records,
    count_spans,
    log_events,
    spans,
)
from metis.ingest.push import PushTarget, ingest_items
from metis.server_errors import describe
from metis.timeutil import utcnow

log = logging.getLogger("metis.ingest.otel")

LOG_MAPPERS: tuple[Callable[[LogEvent], Mapped | None], ...] = (
    claude_code.map_log,
    codex.map_log,
)
SPAN_MAPPERS: tuple[Callable[[SpanEvent], Mapped | None], ...] = (genai.map_span,)
MAX_REASONS = 5
RETRY_AFTER_BUSY_S = 1
RETRY_AFTER_DB_S = 5


@dataclass
class Outcome:
    """What one request did: records seen, usage items stored, rejections with reasons."""

    records: int = 0
    accepted: int = 0
    reasons: list[str] = field(default_factory=list)

    @property
    def rejected(self) -> int:
        return len(self.reasons)

    def message(self) -> str:
        if not self.reasons:
            return ""
        shown = "; ".join(self.reasons[:MAX_REASONS])
        more = len(self.reasons) - MAX_REASONS
        tail = f" (and {more} more)" if more > 0 else ""
        return f"{self.rejected} usage record(s) rejected: {shown}{tail}"


class Rejection(Exception):
    """An error answer: HTTP status, message, optional BadRequest field and headers."""

    def __init__(self, status: int, message: str, field: str | None = None, **headers: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = headers


def _map_all(
    events: Sequence[Any], mappers: Sequence[Callable[[Any], Mapped | None]], out: Outcome
) -> list[Mapped]:
    mapped: list[Mapped] = []
    for ev in events:
        for mapper in mappers:
            try:
                m = mapper(ev)
            except MappingError as exc:
                out.reasons.append(str(exc))
                break
            if m is not None:
                mapped.append(m)
                break
    return mapped


def _store(
    conn: Connection, tok: ingest_tokens.IngestToken, mapped: list[Mapped], out: Outcome
) -> None:
    """Hand the mapped items to the push path, one batch per source."""
    if not mapped:
        return
    now = utcnow()
    items = identity.to_items(conn, mapped)
    by_source: dict[str, list[dict[str, Any]]] = {}
    for m, item in zip(mapped, items, strict=True):
        by_source.setdefault(m.source, []).append(item)
    for source, batch in sorted(by_source.items()):
        target = PushTarget(tok.workspace_id, source, tok.id, tok.via_gateway, tok.user_id)
        res = ingest_items(conn, target, batch, now)
        out.accepted += len(res.accepted) + len(res.unchanged) + len(res.revised)
        for r in res.rejected:
            out.reasons.append(f"{r.idempotency_key or source}: {', '.join(r.reasons)}")


def process(engine: Engine, tok: ingest_tokens.IngestToken, signal: Signal, req: Any) -> Outcome:
    """Map and store one decoded request in one transaction; returns what happened."""
    out = Outcome()
    if signal == "logs":
        out.records = count_log_records(req)
        mapped = _map_all(list(log_events(req)), LOG_MAPPERS, out)
    elif signal == "traces":
        out.records = count_spans(req)
        mapped = _map_all(list(spans(req)), SPAN_MAPPERS, out)
    else:
        out.records = count_data_points(req)
        mapped = []
    with engine.begin() as conn:
        _store(conn, tok, mapped, out)
        activity.record(
            conn,
            tok.id,
            f"otel_{signal}",
            utcnow(),
            records=out.records,
            accepted=out.accepted,
            rejected=out.rejected,
        )
    return out


class Receiver:
    """The receiver's limits and in-flight count (one per app)."""

    def __init__(self, max_body_bytes: int, max_concurrency: int) -> None:
        self.max_body = max_body_bytes
        self.max_concurrency = max_concurrency
        self.in_flight = 0

    def _authenticate(self, engine: Engine, header: str) -> ingest_tokens.IngestToken:
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise Rejection(
                401,
                "ingest token required: Authorization: Bearer mit_… "
                "(OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer mit_…)",
                **{"WWW-Authenticate": "Bearer"},
            )
        with engine.connect() as conn:
            tok = ingest_tokens.verify(conn, secret.strip())
        if tok is None:
            raise Rejection(
                401, "invalid or revoked ingest token", **{"WWW-Authenticate": "Bearer"}
            )
        return tok

    async def _body(self, request: Request) -> bytes:
        length = request.headers.get("content-length")
        too_big = f"body over {self.max_body} bytes; send smaller batches"
        if length is not None and length.isdigit() and int(length) > self.max_body:
            raise Rejection(413, too_big)
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                raise Rejection(413, too_big)
            chunks.append(chunk)
        return b"".join(chunks)

    def _work(
        self,
        engine: Engine,
        tok: ingest_tokens.IngestToken,
        signal: Signal,
        body: bytes,
        encoding: Encoding,
        gzipped: bool,
    ) -> Outcome:
        try:
            raw = codec.gunzip(body, self.max_body) if gzipped else body
            req = codec.decode(signal, raw, encoding)
        except TooLarge as exc:
            raise Rejection(413, str(exc)) from None
        except BadPayload as exc:
            raise Rejection(400, str(exc), field="body") from None
        return process(engine, tok, signal, req)

    async def handle(self, signal: Signal, request: Request, engine: Engine) -> Response:
        """Answer one export request (see the module docstring)."""
        encoding = codec.encoding_of(request.headers.get("content-type"))
        reply: Encoding = encoding or "json"
        try:
            auth = request.headers.get("authorization", "")
            tok = await anyio.to_thread.run_sync(self._authenticate, engine, auth)
            if encoding is None:
                raise Rejection(
                    415,
                    "unsupported Content-Type: send application/x-protobuf or application/json",
                )
            ce = request.headers.get("content-encoding", "").strip().lower()
            if ce not in ("", "identity", "gzip"):
                raise Rejection(415, f"unsupported Content-Encoding {ce[:40]!r}: use gzip")
            if self.in_flight >= self.max_concurrency:
                raise Rejection(
                    429,
                    "too many OTLP requests in progress; retry later",
                    **{"Retry-After": str(RETRY_AFTER_BUSY_S)},
                )
            self.in_flight += 1
            try:
                body = await self._body(request)
                out = await anyio.to_thread.run_sync(
                    self._work, engine, tok, signal, body, encoding, ce == "gzip"
                )
            finally:
                self.in_flight -= 1
        except Rejection as r:
            return Response(
                codec.status(r.status, r.message, reply, r.field),
                status_code=r.status,
                media_type=codec.CONTENT_TYPES[reply],
                headers=r.headers or None,
            )
        except OperationalError as exc:
            orig = getattr(exc, "orig", None) or exc
            log.error("otlp %s: database error (%s)", signal, type(orig).__name__)
            return Response(
                codec.status(503, f"{describe(exc)}; retry later", reply),
                status_code=503,
                media_type=codec.CONTENT_TYPES[reply],
                headers={"Retry-After": str(RETRY_AFTER_DB_S)},
            )
        return Response(
            codec.success(signal, reply, out.rejected, out.message()),
            status_code=200,
            media_type=codec.CONTENT_TYPES[reply],
        )


router = APIRouter(tags=["ingest"])

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Accepted; partial_success counts usage records that were rejected"},
    400: {"description": "Not an OTLP message (google.rpc.Status with a BadRequest)"},
    401: {"description": "Missing, unknown or revoked ingest token"},
    413: {"description": "Body over METIS_OTEL_MAX_BODY_BYTES (after decompression)"},
    415: {"description": "Content-Type or Content-Encoding not supported"},
    429: {"description": "Too many requests in progress (Retry-After)"},
    503: {"description": "The database cannot take writes (Retry-After)"},
}


def _route(signal: Signal, summary: str) -> None:
    async def endpoint(request: Request, engine: EngineDep) -> Response:
        rec: Receiver = request.app.state.metis_otel
        return await rec.handle(signal, request, engine)

    endpoint.__name__ = f"otlp_{signal}"
    router.add_api_route(
        f"/otel/v1/{signal}",
        endpoint,
        methods=["POST"],
        summary=summary,
        description=__doc__,
        responses=_RESPONSES,
        response_class=Response,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    codec.PROTOBUF: {"schema": {"type": "string", "format": "binary"}},
                    codec.JSON: {"schema": {"type": "object"}},
                },
            },
            "security": [{"IngestToken": []}],
        },
    )


_route("logs", "OTLP/HTTP logs (Claude Code and Codex events → usage)")
_route("traces", "OTLP/HTTP traces (GenAI spans → usage)")
_route("metrics", "OTLP/HTTP metrics (accepted, counted, never spend)")


def install(comps: Any) -> None:
    """Register ``/otel/v1/{logs,traces,metrics}`` on ``comps.api``."""
    s = comps.settings
    comps.api.state.metis_otel = Receiver(s.otel_max_body_bytes, s.otel_max_concurrency)
    comps.api.include_router(router)
