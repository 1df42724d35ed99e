"""A recording HTTP server: what a real client sends, request by request.

`Recorder` is a raw ASGI app (serve it with `metis.util.server_thread.ServerThread`,
real HTTP on 127.0.0.1). For every request it keeps an `Exchange`: method, path,
query, header names, the values of the headers that describe the client
(`INTERESTING` and ``x-stainless-*``), the decoded JSON body and the status it
answered. Then it answers, in this order:

- the first matching `Rule` (a canned status, headers and JSON body, e.g. a 429
  with or without ``x-should-retry: false``, or a 404), counted down by ``times``;
- else, with an ``upstream`` URL, the request is forwarded there (path, query,
  headers and body as received) and the upstream's answer, streamed or not, is
  passed back unchanged: the recorder sits between a CLI and the gateway or the
  simulator and the session completes;
- else a 404 in the provider's error shape.

WebSocket upgrade attempts are recorded too (``kind == "websocket"``) and
refused with ``ws_status`` (an HTTP answer to the upgrade, through the ASGI
WebSocket denial response), so a test can see what a client does on a 403, 404
or 426 from the handshake.

Secrets never enter a record: ``authorization``, ``x-api-key`` and cookies are
kept as names only, and any value or body string containing one of the
``secrets`` given has it replaced by ``<secret>``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx

Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]

INTERESTING = frozenset(
    {
        "accept",
        "accept-encoding",
        "anthropic-beta",
        "anthropic-dangerous-direct-browser-access",
        "anthropic-version",
        "content-type",
        "openai-beta",
        "originator",
        "user-agent",
        "version",
        "x-app",
        "x-codex-beta-features",
        "x-should-retry",
    }
)
"""Headers whose values are recorded (plus every ``x-stainless-*``); others by name only."""

SECRET_HEADERS = frozenset({"authorization", "x-api-key", "cookie", "proxy-authorization"})
HOP_BY_HOP = frozenset(
    {"connection", "content-length", "host", "keep-alive", "transfer-encoding", "upgrade"}
)


class _DenialLogFilter(logging.Filter):
    """uvicorn logs an answered WebSocket denial as an unfinished handshake; drop that line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "returned without completing handshake" not in record.getMessage()


def _quiet_denials() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _DenialLogFilter) for f in logger.filters):
        logger.addFilter(_DenialLogFilter())


@dataclass
class Exchange:
    """One request the recorder received (and what it answered)."""

    kind: str  # "http" | "websocket"
    method: str
    path: str
    query: list[tuple[str, str]]
    header_names: list[str]
    headers: dict[str, str]
    body: Any
    status: int | None = None
    answer: str = ""  # "rule" | "upstream" | "default" | "websocket-denied"
    at: float = 0.0  # seconds since the recorder started
    response_headers: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "method": self.method,
            "path": self.path,
            "query": [list(q) for q in self.query],
            "header_names": self.header_names,
            "headers": self.headers,
            "body": self.body,
            "status": self.status,
            "answer": self.answer,
            "at": round(self.at, 3),
            "response_headers": self.response_headers,
        }


@dataclass
class Rule:
    """A canned answer for requests matching ``method`` and ``path``.

    ``body`` is sent as JSON; ``raw`` (with ``content_type``) as given, e.g. a
    canned SSE stream. ``times``: how many requests it answers (None: all).
    ``when``: an extra predicate on the request's `Exchange`.
    """

    method: str
    path: str
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    times: int | None = None
    when: Callable[[Exchange], bool] | None = None
    raw: bytes | None = None
    content_type: str = "application/json"

    def matches(self, ex: Exchange) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        if ex.method != self.method or ex.path != self.path:
            return False
        return self.when is None or self.when(ex)


class Recorder:
    """The recording ASGI app; see the module docstring."""

    def __init__(
        self,
        upstream: str | None = None,
        *,
        secrets: Iterable[str] = (),
        ws_status: int = 404,
    ) -> None:
        self.upstream = upstream.rstrip("/") if upstream else None
        self.secrets = [s for s in secrets if s]
        self.ws_status = ws_status
        self.rules: list[Rule] = []
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        self._client: httpx.AsyncClient | None = None
        _quiet_denials()

    # -- reading ---------------------------------------------------------------
    def requests(self, path: str | None = None, kind: str = "http") -> list[Exchange]:
        """The exchanges so far (of ``kind``, on ``path`` when given), oldest first."""
        with self._lock:
            return [
                e for e in self.exchanges if e.kind == kind and (path is None or e.path == path)
            ]

    def add_rule(self, rule: Rule) -> Rule:
        self.rules.append(rule)
        return rule

    def scrub(self, text: str) -> str:
        for s in self.secrets:
            text = text.replace(s, "<secret>")
        return text

    # -- ASGI --------------------------------------------------------------------
    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    if self._client is not None:
                        await self._client.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self._http(scope, receive, send)

    def _record(self, scope: dict[str, Any], kind: str, raw: bytes) -> Exchange:
        names: list[str] = []
        values: dict[str, str] = {}
        for k, v in scope["headers"]:
            name = k.decode("latin-1").lower()
            names.append(name)
            if name in SECRET_HEADERS:
                continue
            if name in INTERESTING or name.startswith("x-stainless-"):
                values[name] = self.scrub(v.decode("latin-1"))
        qs = scope.get("query_string", b"").decode("latin-1")
        ex = Exchange(
            kind=kind,
            method=scope.get("method", "GET"),
            path=scope["path"],
            query=[(k, self.scrub(v)) for k, v in parse_qsl(qs, keep_blank_values=True)],
            header_names=names,
            headers=values,
            body=self._decode(raw),
            at=time.monotonic() - self._t0,
        )
        with self._lock:
            self.exchanges.append(ex)
        return ex

    def _decode(self, raw: bytes) -> Any:
        if not raw:
            return None
        text = self.scrub(raw.decode("utf-8", "replace"))
        try:
            return json.loads(text)
        except ValueError:
            return text

    async def _websocket(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        ex = self._record(scope, "websocket", b"")
        await receive()  # websocket.connect
        ex.status, ex.answer = self.ws_status, "websocket-denied"
        if "websocket.http.response" not in scope.get("extensions", {}):
            ex.status = 403  # a close before accept: the server answers the upgrade with 403
            await send({"type": "websocket.close", "code": 1008})
            return
        body = json.dumps({"error": {"message": "websocket not supported", "type": "recorder"}})
        await send(
            {
                "type": "websocket.http.response.start",
                "status": self.ws_status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "websocket.http.response.body", "body": body.encode()})

    async def _http(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        chunks = []
        while True:
            msg = await receive()
            chunks.append(msg.get("body", b""))
            if not msg.get("more_body"):
                break
        raw = b"".join(chunks)
        ex = self._record(scope, "http", raw)
        for rule in self.rules:
            if rule.matches(ex):
                if rule.times is not None:
                    rule.times -= 1
                await self._canned(send, ex, rule, "rule")
                return
        if self.upstream is None:
            body = {"type": "error", "error": {"type": "not_found_error", "message": "no route"}}
            await self._canned(send, ex, Rule(ex.method, ex.path, 404, body), "default")
            return
        await self._forward(self.upstream, scope, send, ex, raw)

    async def _canned(self, send: Send, ex: Exchange, rule: Rule, how: str) -> None:
        if rule.raw is not None:
            data = rule.raw
        else:
            data = json.dumps(rule.body).encode() if rule.body is not None else b""
        hdrs = [
            (b"content-type", rule.content_type.encode()),
            (b"content-length", b"%d" % len(data)),
        ]
        hdrs += [(k.encode(), v.encode()) for k, v in rule.headers.items()]
        ex.status, ex.answer, ex.response_headers = rule.status, how, dict(rule.headers)
        await send({"type": "http.response.start", "status": rule.status, "headers": hdrs})
        await send({"type": "http.response.body", "body": data})

    async def _forward(
        self, upstream: str, scope: dict[str, Any], send: Send, ex: Exchange, raw: bytes
    ) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(600.0, connect=10.0))
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope["headers"]
            if k.decode("latin-1").lower() not in HOP_BY_HOP
        ]
        qs = scope.get("query_string", b"").decode("latin-1")
        url = upstream + scope["path"] + (f"?{qs}" if qs else "")
        req = self._client.build_request(scope["method"], url, headers=headers, content=raw)
        resp = await self._client.send(req, stream=True)
        try:
            out = [
                (k.encode("latin-1"), v.encode("latin-1"))
                for k, v in resp.headers.multi_items()
                if k.lower() not in HOP_BY_HOP
            ]
            ex.status, ex.answer = resp.status_code, "upstream"
            ex.response_headers = {
                k: v
                for k, v in resp.headers.items()
                if k.lower() in ("content-type", "retry-after", "x-should-retry", "request-id")
            }
            await send({"type": "http.response.start", "status": resp.status_code, "headers": out})
            async for chunk in resp.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await resp.aclose()
