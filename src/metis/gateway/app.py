"""The gateway's hot path: raw ASGI handlers, no framework on the request path.

Lifecycle of one inference request (DESIGN.md "Gateway request lifecycle"):

1. Auth from ``Authorization: Bearer gw_…`` or ``x-api-key: gw_…`` against the
   in-memory key cache (`metis.gateway.auth`): 401 ``authentication_error``.
2. Body: one JSON object with a ``model``: else 400. ``allowed_models``: 403.
3. Routing plan (`Gateway.plan_route`, default: the request's own model).
4. Hard caps: reserve the worst-case cost on every counter the key charges
   (`metis.ledger.counters`, in memory): 429 with ``scope``, ``limit_usd``,
   ``current_usd``, ``resets_at`` + ``gateway.quota_exceeded`` +
   ``route.decided`` (winner_index -1, reason quota_exceeded).
5. Forward to each target in turn (`Gateway.forward`) with the workspace's
   ``inference`` credential until one answers; upstream errors keep their
   status and body; connection errors -> 502, timeouts -> 504.
6. Price the reported usage (`metis.pricing`), settle the reservation, and
   queue the ``gateway`` usage record, ``llm.call_completed`` and
   ``route.decided`` for the write-behind flush (`metis.ledger.writer`).

Every response carries ``x-metis-request-id``. Nothing on this path touches
the database except a spend-counter lease grant (`metis.ledger.counters`) or
the first use of a workspace's provider credential.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from metis.config import Settings
from metis.events import GatewayQuotaExceeded
from metis.gateway import caps, limits, metrics, upstream
from metis.gateway.auth import AuthFailure, KeyCache, Resolved, SnapshotLoader
from metis.gateway.http_client import Response, UpstreamClient, UpstreamError
from metis.gateway.plan import RouteContext, RoutePlan, default_plan
from metis.gateway.shapes import error_body
from metis.gateway.stamping import CallFacts, call_event, route_event, usage_record
from metis.gateway.streaming import SSEUsageTap
from metis.gateway.upstream import (
    CredentialCache,
    CredentialResolver,
    UpstreamCredential,
    db_resolver,
    new_client,
)
from metis.gateway.usage import Tokens, from_anthropic, from_openai
from metis.ids import fast_ulid, new_id
from metis.jsonutil import DECODE_ERRORS
from metis.ledger.counters import (
    REFRESH_INTERVAL_S,
    CapExceeded,
    CountersUnavailable,
    Reservation,
    SpendCounters,
)
from metis.ledger.writer import PendingEvent, WriteBehind
from metis.money import from_nanousd
from metis.pricing import Priced, has_price, price
from metis.timeutil import iso, utcnow

log = logging.getLogger("metis.gateway")

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]

DEFAULT_ANTHROPIC_VERSION = b"2023-06-01"
_JSON = (b"content-type", b"application/json")


class _Req(msgspec.Struct):
    """The request fields the gateway itself looks at (others pass through)."""

    model: Any = None
    stream: Any = None
    stream_options: Any = None
    max_tokens: Any = None
    max_completion_tokens: Any = None


class _Resp(msgspec.Struct):
    id: Any = None
    model: Any = None
    usage: Any = None


_BODY_ERRORS: tuple[type[Exception], ...] = (*DECODE_ERRORS, msgspec.ValidationError)
_dec_req = msgspec.json.Decoder(_Req)
_dec_resp = msgspec.json.Decoder(_Resp)


class _ClientGone(Exception):
    pass


class _BodyTooLarge(Exception):
    pass


@dataclass
class Stats:
    """Counters exported as metrics."""

    requests: int = 0
    unpriced_calls: int = 0
    quota_rejections: int = 0
    upstream_errors: int = 0


@dataclass
class Attempt:
    """The outcome of forwarding to one target."""

    answered: bool  # a response (success or a final upstream error) reached the client
    status: str
    http_status: int = 0
    retryable: bool = False
    error_kind: str | None = None  # upstream_error | upstream_timeout, when not answered
    message: str = ""
    upstream_body: bytes | None = None
    upstream_ctype: bytes | None = None


@dataclass
class Call:
    """Per-request state handed to the forwarder."""

    request_id: str
    shape: str
    endpoint: str  # chat | messages | embeddings
    path: str
    resolved: Resolved
    raw: bytes
    req: _Req
    headers: dict[bytes, bytes]
    started_at: Any
    t0: float
    stream: bool
    reservation: Reservation | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)


_REQ = {s: metrics.REQUESTS.labels(s) for s in ("openai", "anthropic")}

ENDPOINTS: dict[str, tuple[str, str]] = {
    "/v1/chat/completions": ("openai", "chat"),
    "/v1/embeddings": ("openai", "embeddings"),
    "/v1/messages": ("anthropic", "messages"),
}


class Gateway:
    """One gateway per server process: caches, counters, writer, client session."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        key_loader: SnapshotLoader | None = None,
        credential_resolver: CredentialResolver | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        kw: dict[str, Any] = {"watch": ("identity", "credentials")}
        if key_loader is not None:
            kw["loader"] = key_loader
        self.keys = KeyCache(engine, **kw)
        self.creds = CredentialCache(credential_resolver or db_resolver(engine, settings))
        self.keys.on_change.append(self.creds.invalidate)
        self.counters = SpendCounters(engine)
        # The flush runs in a child process under `metis serve` (no GIL contention
        # with the event loop: docs/performance.md), in a thread when embedded.
        in_server = os.environ.get("METIS_SERVER_TUNING") == "1"
        self.writer = WriteBehind(
            engine,
            self.counters,
            max_items=settings.write_buffer_max_items,
            process=settings.writer == "process" or (settings.writer == "auto" and in_server),
        )
        # docs/gateway.md "When the database is unavailable"
        self.caps_fail_open = settings.caps_on_db_error == "open"
        self.stats = Stats()
        # Seams for routing/translation (issue 8): see metis.gateway.plan.
        self.plan_route: Callable[[RouteContext], RoutePlan] = default_plan
        self.cross_shape: Any = None
        self.session: UpstreamClient | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    # -- lifecycle -----------------------------------------------------------
    async def startup(self) -> None:
        self.loop = asyncio.get_running_loop()
        if os.environ.get("METIS_SERVER_TUNING") == "1":  # set by `metis serve`
            _tune_interpreter()
        await self.keys.load()
        self.session = new_client()
        self.writer.start()
        self._stop = asyncio.Event()
        self._tasks.append(
            asyncio.create_task(
                self._every(self.keys.poll_interval_s, self.keys.poll_once, "key cache refresh")
            )
        )
        self._tasks.append(
            asyncio.create_task(
                self._every(REFRESH_INTERVAL_S, self.counters.refresh, "spend counter refresh")
            )
        )

    async def _every(self, interval: float, job: Callable[[], Awaitable[Any]], what: str) -> None:
        """Run ``job`` every ``interval`` s until shutdown (never cancelled mid-job)."""
        assert self._stop is not None
        failing = False
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), interval)
            if self._stop.is_set():
                return
            try:
                await job()
            except Exception:
                if not failing:  # once per outage, not every interval
                    log.warning("%s failed; keeping the previous state", what, exc_info=True)
                failing = True
            else:
                if failing:
                    log.warning("%s works again", what)
                failing = False

    async def shutdown(self) -> None:
        if self._stop is not None:
            self._stop.set()
        for t in self._tasks:
            await t
        self._tasks.clear()
        self.counters.return_leases()
        await self.writer.close()
        if self.session is not None:
            await self.session.close()
            self.session = None
        self.engine.dispose()

    def routes(self) -> dict[str, Any]:
        async def chat(scope: dict[str, Any], receive: Receive, send: Send) -> None:
            await self.handle(scope, receive, send, "openai", "chat")

        async def embeddings(scope: dict[str, Any], receive: Receive, send: Send) -> None:
            await self.handle(scope, receive, send, "openai", "embeddings")

        async def messages(scope: dict[str, Any], receive: Receive, send: Send) -> None:
            await self.handle(scope, receive, send, "anthropic", "messages")

        return {
            "/v1/chat/completions": chat,
            "/v1/embeddings": embeddings,
            "/v1/messages": messages,
            "/v1/models": self.models,
        }

    # -- responses -----------------------------------------------------------
    @staticmethod
    async def _respond(
        send: Send, status: int, body: bytes, rid: str, ctype: tuple[bytes, bytes] = _JSON
    ) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    ctype,
                    (b"content-length", str(len(body)).encode()),
                    (b"x-metis-request-id", rid.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _error(
        self, send: Send, shape: str, kind: str, message: str, rid: str, **extra: Any
    ) -> int:
        status, body = error_body(shape, kind, message, **extra)  # type: ignore[arg-type]
        await self._respond(send, status, body, rid)
        return status

    # -- the request path ----------------------------------------------------
    async def handle(
        self, scope: dict[str, Any], receive: Receive, send: Send, shape: str, endpoint: str
    ) -> None:
        t0 = time.perf_counter()
        rid = request_id()
        self.stats.requests += 1
        _REQ[shape].inc()
        if scope["method"] != "POST":
            await self._error(send, shape, "not_found", "use POST", rid)
            return
        headers = dict(scope["headers"])
        try:
            resolved = await self.keys.authenticate(_token(headers))
        except AuthFailure as e:
            await self._error(send, shape, "authentication_error", str(e), rid)
            return
        try:
            raw = await _read_body(receive, headers, scope)
        except _ClientGone:
            return
        except _BodyTooLarge:
            await self._error(
                send,
                shape,
                "request_too_large",
                f"request body over {limits.MAX_BODY_BYTES} bytes",
                rid,
            )
            return
        except TimeoutError:
            await self._error(
                send, shape, "request_timeout", "request body not received in time", rid
            )
            return
        try:
            req = _dec_req.decode(raw)
        except _BODY_ERRORS:
            await self._error(send, shape, "invalid_request", "body must be a JSON object", rid)
            return
        model = req.model
        if not isinstance(model, str) or not model:
            await self._error(send, shape, "invalid_request", "'model' is required", rid)
            return
        snap = resolved.snapshot
        allowed = snap.allowed_models
        if allowed is not None and model not in allowed:
            await self._error(
                send, shape, "permission_error", f"model {model!r} is not allowed for this key", rid
            )
            return
        principal = resolved.principal
        plan = self.plan_route(
            RouteContext(
                principal=principal,
                snapshot=snap,
                inbound_shape=shape,
                model=model,
                raw_body=raw,
                spent=self._spent,
                endpoint=endpoint,
            )
        )
        call = Call(
            request_id=rid,
            shape=shape,
            endpoint=endpoint,
            path=scope["path"],
            resolved=resolved,
            raw=raw,
            req=req,
            headers=headers,
            started_at=utcnow(),
            t0=t0,
            stream=req.stream is True and endpoint != "embeddings",
        )
        candidates = [f"{t.provider}:{t.model}" for t in plan.targets]
        # Hard caps: reserve the worst case over the plan's targets.
        scopes = caps.counters_for(snap, call.started_at)
        capped = any(s.cap_nanousd is not None for s in scopes)
        max_out = caps.max_output_tokens(req, endpoint)
        est = 0
        for t in plan.targets:
            t_est = caps.estimate(t.provider, t.model, len(raw), max_out)
            if t_est is None:
                if capped:
                    await self._error(
                        send,
                        shape,
                        "permission_error",
                        f"model {t.model!r} has no known price and this key has a hard "
                        "spend cap; unpriced models cannot be called under a cap",
                        rid,
                    )
                    return
                continue
            est = max(est, t_est)
        if self.writer.full:  # never drop a record: admit nothing new instead
            metrics.DB_UNAVAILABLE.labels("buffer_full").inc()
            await self._error(
                send,
                shape,
                "unavailable",
                "usage buffer full: the database is not accepting writes; retry later",
                rid,
            )
            return
        try:
            call.reservation = await self.counters.reserve(scopes, est)
        except CapExceeded as ce:
            await self._quota_exceeded(send, call, ce, candidates)
            return
        except CountersUnavailable:
            if not self.caps_fail_open:
                metrics.DB_UNAVAILABLE.labels("caps_refused").inc()
                await self._error(
                    send,
                    shape,
                    "unavailable",
                    "spend caps cannot be checked: the database is unavailable "
                    "(METIS_CAPS_ON_DB_ERROR=closed); retry later",
                    rid,
                )
                return
            metrics.DB_UNAVAILABLE.labels("caps_fail_open").inc()
            call.reservation = await self.counters.reserve(scopes, est, leased=False)
        try:
            await self._run_plan(send, receive, call, plan, candidates)
        except DBAPIError:  # e.g. a credential's first use while the database is down
            log.warning("gateway request %s: database unavailable", rid)
            with contextlib.suppress(Exception):
                await self._error(
                    send, shape, "unavailable", "the database is unavailable; retry later", rid
                )
        except Exception:
            # A bug, not a user error: answer in the inbound shape if nothing was
            # sent yet (never a traceback to the client); no request body logged.
            log.exception("gateway request %s failed", rid)
            with contextlib.suppress(Exception):
                await self._error(send, shape, "internal", "internal gateway error", rid)
        finally:
            if call.reservation is not None and not call.reservation.done:
                self.counters.release(call.reservation)

    async def _quota_exceeded(
        self, send: Send, call: Call, ce: CapExceeded, candidates: list[str]
    ) -> None:
        self.stats.quota_rejections += 1
        metrics.QUOTA_REJECTIONS.labels(ce.scope).inc()
        p = call.resolved.principal
        limit, current = from_nanousd(ce.limit_nanousd), from_nanousd(ce.current_nanousd)
        self.writer.add(
            None,
            [
                PendingEvent(
                    GatewayQuotaExceeded(
                        gateway_key_id=p.gateway_key_id,
                        user_id=p.user_id,
                        team_id=p.team_id,
                        scope=ce.scope,  # type: ignore[arg-type]
                        limit_usd=limit,
                        current_usd=current,
                        inbound_shape=call.shape,  # type: ignore[arg-type]
                    ),
                    call.started_at,
                    {"workspace_id": p.workspace_id, "request_id": call.request_id},
                ),
                route_event(
                    request_id=call.request_id,
                    principal=p,
                    candidates=candidates,
                    winner_index=-1,
                    reason="quota_exceeded",
                    rule=None,
                    attempts=[],
                    inbound_shape=call.shape,
                    ts=call.started_at,
                ),
            ],
        )
        await self._error(
            send,
            call.shape,
            "quota_exceeded",
            f"{ce.scope} spend cap reached: ${current} of ${limit}; resets at {iso(ce.resets_at)}",
            call.request_id,
            scope=ce.scope,
            limit_usd=limit,
            current_usd=current,
            resets_at=iso(ce.resets_at),
        )

    async def _run_plan(
        self, send: Send, receive: Receive, call: Call, plan: RoutePlan, candidates: list[str]
    ) -> None:
        last: Attempt | None = None
        winner = -1
        targets = plan.targets
        for i, target in enumerate(targets):
            t_att = time.perf_counter()
            att = await self.forward(send, receive, call, target, is_last=i == len(targets) - 1)
            call.attempts.append(
                {
                    "target": candidates[i],
                    "status": att.status,
                    "http_status": att.http_status,
                    "latency_ms": int((time.perf_counter() - t_att) * 1000),
                }
            )
            last = att
            if att.answered:
                # winner = the candidate whose success reached the client; -1 when it got an error
                winner = i if att.http_status < 400 else -1
                break
        if last is not None and not last.answered:
            # Nothing reached the client: answer with the last failure.
            self.stats.upstream_errors += 1
            if last.upstream_body is not None:
                await self._respond(
                    send,
                    last.http_status,
                    last.upstream_body,
                    call.request_id,
                    (b"content-type", last.upstream_ctype or b"application/json"),
                )
                http_status = last.http_status
            else:
                http_status = await self._error(
                    send,
                    call.shape,
                    last.error_kind or "upstream_error",
                    last.message,
                    call.request_id,
                )
            t = targets[-1]
            self._stamp(call, t.provider, t.model, None, Tokens(), None, last.status, http_status)
        self.writer.add(
            None,
            [
                route_event(
                    request_id=call.request_id,
                    principal=call.resolved.principal,
                    candidates=candidates,
                    winner_index=winner,
                    reason=plan.reason,
                    rule=plan.rule,
                    attempts=call.attempts,
                    inbound_shape=call.shape,
                    ts=call.started_at,
                )
            ],
        )

    def _spent(self, scope: str, scope_id: str) -> int:
        from metis.timeutil import day_key, month_key

        now = utcnow()
        period = month_key(now) if scope.endswith("monthly") else day_key(now)
        return self.counters.spent((scope, scope_id, period))

    # -- one attempt -----------------------------------------------------------
    async def forward(
        self, send: Send, receive: Receive, call: Call, target: Any, *, is_last: bool
    ) -> Attempt:
        """Forward ``call`` to one target; the per-attempt seam for routing."""
        provider = target.provider
        if provider != call.shape:
            if self.cross_shape is not None:
                result: Attempt = await self.cross_shape(self, send, receive, call, target, is_last)
                return result
            return Attempt(
                False,
                "unsupported_target",
                502,
                True,
                "upstream_error",
                f"target {provider}:{target.model} needs shape translation, which is not installed",
            )
        cred = await self.creds.get(call.resolved.principal.workspace_id, provider)
        if cred is None:
            return Attempt(
                False,
                "no_credential",
                502,
                True,
                "upstream_error",
                f"workspace has no {provider} credential with purpose inference",
            )
        body = call.raw
        withhold = False
        if call.stream and provider == "openai":
            so = call.req.stream_options
            client_asked = isinstance(so, dict) and so.get("include_usage") is True
            if not client_asked:
                withhold = True
                obj = msgspec.json.decode(body)
                so2 = dict(so) if isinstance(so, dict) else {}
                so2["include_usage"] = True
                obj["stream_options"] = so2
                if target.model != call.req.model:
                    obj["model"] = target.model
                body = msgspec.json.encode(obj)
        if target.model != call.req.model and body is call.raw:
            obj = msgspec.json.decode(body)
            obj["model"] = target.model
            body = msgspec.json.encode(obj)
        return await self._send_upstream(send, receive, call, target, cred, body, withhold, is_last)

    def _upstream_headers(
        self, call: Call, provider: str, cred: UpstreamCredential
    ) -> dict[str, str]:
        if provider == "anthropic":
            h = {
                "x-api-key": cred.secret,
                "anthropic-version": call.headers.get(
                    b"anthropic-version", DEFAULT_ANTHROPIC_VERSION
                ).decode("latin-1"),  # header bytes pass through as received
                "content-type": "application/json",
            }
            beta = call.headers.get(b"anthropic-beta")
            if beta:
                h["anthropic-beta"] = beta.decode("latin-1")
            return h
        return {"authorization": "Bearer " + cred.secret, "content-type": "application/json"}

    async def _send_upstream(
        self,
        send: Send,
        receive: Receive,
        call: Call,
        target: Any,
        cred: UpstreamCredential,
        body: bytes,
        withhold: bool,
        is_last: bool,
    ) -> Attempt:
        provider = target.provider
        assert self.session is not None
        url = cred.api_root + call.path
        headers = self._upstream_headers(call, provider, cred)
        try:
            # The header wait is bounded by READ_TIMEOUT_S, each body read by
            # STREAM_IDLE_TIMEOUT_S (metis.gateway.http_client).
            resp = await self.session.post(url, body, headers, timeout=upstream.READ_TIMEOUT_S)
        except TimeoutError:
            return Attempt(False, "timeout", 504, True, "upstream_timeout", "upstream timed out")
        except UpstreamError as e:
            return Attempt(
                False,
                "connect_error",
                502,
                True,
                "upstream_error",
                f"upstream connection failed: {type(e).__name__}",
            )
        try:
            if resp.status >= 400:
                if resp.status == 401:
                    self.creds.invalidate(call.resolved.principal.workspace_id, provider)
                try:
                    data = upstream.scrub_secret(await resp.read(), cred)
                except (TimeoutError, UpstreamError):
                    data = b""
                ctype = resp.headers.get("content-type", "application/json").encode()
                retryable = resp.status == 429 or resp.status >= 500
                if retryable and not is_last:
                    return Attempt(
                        False, "upstream_error", resp.status, True, None, "", data, ctype
                    )
                await self._respond(
                    send, resp.status, data, call.request_id, (b"content-type", ctype)
                )
                self.stats.upstream_errors += 1
                self._stamp(
                    call,
                    provider,
                    target.model,
                    None,
                    Tokens(),
                    None,
                    "upstream_error",
                    resp.status,
                )
                return Attempt(True, "upstream_error", resp.status, retryable)
            if not call.stream:
                return await self._plain(send, call, target, resp, cred)
            return await self._stream(send, receive, call, target, resp, cred, withhold)
        finally:
            resp.release()

    async def _plain(
        self,
        send: Send,
        call: Call,
        target: Any,
        resp: Response,
        cred: UpstreamCredential,
    ) -> Attempt:
        try:
            data = await resp.read()
        except TimeoutError:
            return Attempt(False, "timeout", 504, True, "upstream_timeout", "upstream timed out")
        except UpstreamError as e:
            return Attempt(
                False,
                "connect_error",
                502,
                True,
                "upstream_error",
                f"upstream connection failed: {type(e).__name__}",
            )
        tokens = Tokens()
        rid_up = model = None
        try:
            r = _dec_resp.decode(data)
            rid_up = r.id if isinstance(r.id, str) else None
            model = r.model if isinstance(r.model, str) else None
            if target.provider == "anthropic":
                from_anthropic(r.usage, tokens)
            else:
                from_openai(r.usage, tokens)
        except _BODY_ERRORS:
            pass
        ctype = resp.headers.get("content-type", "application/json").encode()
        await self._respond(send, resp.status, data, call.request_id, (b"content-type", ctype))
        self._stamp(
            call,
            target.provider,
            target.model,
            model,
            tokens,
            rid_up,
            "ok",
            resp.status,
            cred.api_root,
        )
        return Attempt(True, "ok", resp.status)

    async def _stream(
        self,
        send: Send,
        receive: Receive,
        call: Call,
        target: Any,
        resp: Response,
        cred: UpstreamCredential,
        withhold: bool,
    ) -> Attempt:
        await send(
            {
                "type": "http.response.start",
                "status": resp.status,
                "headers": [
                    (
                        b"content-type",
                        resp.headers.get("content-type", "text/event-stream").encode(),
                    ),
                    (b"cache-control", b"no-cache"),
                    (b"x-metis-request-id", call.request_id.encode()),
                ],
            }
        )
        tap = SSEUsageTap(target.provider, withhold_usage_chunk=withhold)
        gone = asyncio.Event()

        async def watch() -> None:
            while True:
                msg = await receive()
                if msg["type"] == "http.disconnect":
                    gone.set()
                    return

        watcher = asyncio.create_task(watch())
        status = "ok"
        try:
            async for chunk in resp.iter_any():
                out = tap.feed(chunk)
                if out and not gone.is_set():
                    await send({"type": "http.response.body", "body": out, "more_body": True})
            out = tap.flush()
        except (TimeoutError, UpstreamError):
            status = "upstream_error"
            out = tap.flush()
        finally:
            watcher.cancel()
        if gone.is_set():
            status = "client_disconnected"
        else:
            await send({"type": "http.response.body", "body": out, "more_body": False})
        self._stamp(
            call,
            target.provider,
            target.model,
            tap.model,
            tap.tokens,
            tap.response_id,
            status,
            resp.status,
            cred.api_root,
        )
        return Attempt(True, status, resp.status)

    # -- accounting ------------------------------------------------------------
    def _stamp(
        self,
        call: Call,
        provider: str,
        target_model: str,
        reported_model: str | None,
        tokens: Tokens,
        correlation_id: str | None,
        status: str,
        http_status: int,
        api_root: str | None = None,
    ) -> None:
        model_raw = reported_model or target_model
        try:
            priced = price(
                provider,
                model_raw,
                input_tokens=tokens.input,
                output_tokens=tokens.output,
                cached_input_tokens=tokens.cached,
                cache_creation_input_tokens=tokens.cache_creation,
                reasoning_tokens=min(tokens.reasoning, tokens.output),
                at=call.started_at,
            )
        except ValueError:
            priced = Priced(None, "none", None, model_raw.lower())
        if priced.cost_nanousd is None and not has_price(provider, target_model):
            self.stats.unpriced_calls += 1
            metrics.UNPRICED_CALLS.labels(provider).inc()
        if status not in ("ok", "client_disconnected"):
            metrics.UPSTREAM_ERRORS.labels(provider).inc()
        if call.reservation is not None:
            self.counters.settle(call.reservation, priced.cost_nanousd or 0)
        facts = CallFacts(
            request_id=call.request_id,
            principal=call.resolved.principal,
            inbound_shape=call.shape,
            provider=provider,
            model_raw=model_raw,
            stream=call.stream,
            started_at=call.started_at,
            latency_ms=int((time.perf_counter() - call.t0) * 1000),
            http_status=http_status,
            status=status,
            tokens=tokens,
            priced=priced,
            correlation_id=correlation_id,
            api_root=api_root,
        )
        self.writer.add(usage_record(facts), [call_event(facts)])

    # -- GET /v1/models --------------------------------------------------------
    async def models(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        rid = new_id("req")
        headers = dict(scope["headers"])
        shape = "anthropic" if b"anthropic-version" in headers else "openai"
        try:
            resolved = await self.keys.authenticate(_token(headers))
        except AuthFailure as e:
            await self._error(send, shape, "authentication_error", str(e), rid)
            return
        snap = resolved.snapshot
        ids: list[tuple[str, str]] = []
        if snap.allowed_models is not None:
            ids = [(m, _provider_guess(m)) for m in snap.allowed_models]
        else:
            from metis.gateway.catalog import known_models

            for provider in ("openai", "anthropic"):
                if await self.creds.get(snap.workspace_id, provider) is not None:
                    ids.extend((m, provider) for m in known_models(provider))
        if shape == "anthropic":
            data = [
                {"type": "model", "id": m, "display_name": m, "created_at": "1970-01-01T00:00:00Z"}
                for m, _ in ids
            ]
            body = msgspec.json.encode(
                {
                    "data": data,
                    "has_more": False,
                    "first_id": data[0]["id"] if data else None,
                    "last_id": data[-1]["id"] if data else None,
                }
            )
        else:
            body = msgspec.json.encode(
                {
                    "object": "list",
                    "data": [
                        {"id": m, "object": "model", "created": 0, "owned_by": p} for m, p in ids
                    ],
                }
            )
        await self._respond(send, 200, body, rid)


def _tune_interpreter() -> None:
    """Latency tuning for a server process (measured in docs/performance.md).

    - Worker threads (key-cache and counter polls; the write-behind flush when
      ``METIS_WRITER=thread``) hold the GIL while they run Python; a 1 ms
      switch interval (default 5 ms) hands it back to the event loop sooner.
      Under `metis serve` the flush itself runs in a child process.
    - Objects alive after startup (modules, price data, caches) are frozen out
      of the cyclic GC and generation 0 is collected less often, so requests
      do not pay for repeated full-heap scans.
    """
    sys.setswitchinterval(0.001)
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def request_id() -> str:
    """``req_<ULID>``: millisecond time + 80 random bits, Crockford base32 (26 chars).

    Equivalent to ``metis.ids.new_id("req")`` at a fraction of its cost
    (`metis.ids.fast_ulid`; reseeded in forked workers).
    """
    return "req_" + fast_ulid()


def _provider_guess(model: str) -> str:
    return "anthropic" if model.startswith("claude") else "openai"


def _token(headers: dict[bytes, bytes]) -> str:
    auth = headers.get(b"authorization")
    if auth is not None:
        a = auth.decode("latin-1")
        if a[:7].lower() == "bearer ":
            return a[7:].strip()
    key = headers.get(b"x-api-key")
    return key.decode("latin-1").strip() if key is not None else ""


_SERVER_BOUNDS_BODY = "metis.body_idle_timeout"  # scope extension set by metis.gateway.protocol


async def _read_body(receive: Receive, headers: dict[bytes, bytes], scope: dict[str, Any]) -> bytes:
    """The request body, within `limits.MAX_BODY_BYTES` (else `_BodyTooLarge`, before
    reading when Content-Length says so) and with at most `limits.BODY_IDLE_TIMEOUT_S`
    between two of its pieces (else TimeoutError).

    Under `metis.gateway.protocol` the server bounds each wait itself (the scope's
    ``metis.body_idle_timeout`` extension), so a body that has already arrived, the
    usual case, costs no timer here."""
    length = headers.get(b"content-length")
    if length is not None and length.isdigit() and int(length) > limits.MAX_BODY_BYTES:
        raise _BodyTooLarge
    if _SERVER_BOUNDS_BODY in scope.get("extensions", ()):
        return await _collect_body(receive, None)
    async with asyncio.timeout(limits.BODY_IDLE_TIMEOUT_S) as deadline:
        return await _collect_body(receive, deadline)


async def _collect_body(receive: Receive, deadline: asyncio.Timeout | None) -> bytes:
    msg = await receive()
    if msg["type"] == "http.disconnect":
        raise _ClientGone
    body: bytes = msg.get("body", b"")
    if len(body) > limits.MAX_BODY_BYTES:
        raise _BodyTooLarge
    if not msg.get("more_body"):
        return body
    parts, size = [body], len(body)
    loop = asyncio.get_running_loop()
    while True:
        if deadline is not None:
            deadline.reschedule(loop.time() + limits.BODY_IDLE_TIMEOUT_S)
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise _ClientGone
        chunk = msg.get("body", b"")
        size += len(chunk)
        if size > limits.MAX_BODY_BYTES:
            raise _BodyTooLarge
        parts.append(chunk)
        if not msg.get("more_body"):
            return b"".join(parts)


def install(comps: Any) -> Gateway:
    """Register the gateway's hot routes and lifecycle hooks on the server components."""
    from metis.db.engine import make_engine

    # Pooled: the key cache and counter polls read every second (SQLite would
    # otherwise open the file and set its pragmas on each poll).
    gw = Gateway(comps.settings, make_engine(settings=comps.settings, pooled=True))
    comps.gateway_routes.update(gw.routes())
    comps.startup.append(gw.startup)
    comps.shutdown.append(gw.shutdown)
    comps.gateway = gw
    _forget_hooks(comps, gw)
    return gw


def _forget_hooks(comps: Any, gw: Gateway) -> None:
    """``POST /analytics/user/{id}/forget`` in this process: flush the buffer first (the
    answer counts those rows), drop the user's cached keys after (issue 18 #5)."""

    def on_loop(coro: Any) -> None:
        if gw.loop is None or gw.loop.is_closed() or not gw.loop.is_running():
            coro.close()
            return
        try:
            asyncio.run_coroutine_threadsafe(coro, gw.loop).result(10)
        except Exception:  # the rows still get pseudonymized when they are written
            log.warning("forget: gateway hook failed", exc_info=True)

    async def drop(user_id: str) -> None:
        gw.keys.drop_user(user_id)

    state = comps.api.state
    state.metis_before_forget = [lambda: on_loop(gw.writer.flush())]
    state.metis_after_forget = [lambda uid: on_loop(drop(uid))]
