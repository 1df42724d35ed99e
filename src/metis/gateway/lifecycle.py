"""The shared call lifecycle of every billed inbound API (`metis.gateway.inbound`).

Lifecycle of one inference request (DESIGN.md "Gateway request lifecycle"):

1. Auth from ``Authorization: Bearer gw_…``, ``x-api-key``, ``api-key`` (Azure
   clients) or ``x-goog-api-key`` (Gemini clients) against the in-memory key
   cache (`metis.gateway.auth`): 401 ``authentication_error``.
2. Body: one JSON object with a ``model`` (read by the API's ``decoder``, or
   from the path by its ``bind``): else 400. ``allowed_models``: 403.
3. Routing plan (``Gateway.plan_route``, default: the request's own model at
   the API's provider, or ``provider/model`` when that names one of the
   workspace's providers, `metis.gateway.plan`).
4. Hard caps: reserve the worst-case cost (the API's ``worst_case``,
   `metis.gateway.worst_case`) on every counter the key charges
   (`metis.ledger.counters`, in memory):
   429 with ``scope``, ``limit_usd``, ``current_usd``, ``resets_at``, headers
   ``x-should-retry: false`` and ``retry-after`` (seconds to the reset) +
   ``gateway.quota_exceeded`` + ``route.decided`` (winner_index -1, reason
   quota_exceeded).
5. Forward to each target in turn (`CallPath.forward`) with the workspace's
   ``inference`` credential of that provider until one answers; the
   credential's family (`metis.gateway.upstreams`) builds the request and
   adapts its answer; upstream errors keep their status, body and
   ``retry-after`` / ``x-should-retry``; connection errors -> 502, timeouts
   -> 504. The query string goes upstream as sent (for the same API).
6. Price the reported usage (`metis.pricing`: the provider's genai-prices id,
   else the prices file; a provider-stated cost is recorded as such), settle
   the reservation, and queue the ``gateway`` usage record,
   ``llm.call_completed`` and ``route.decided`` for the write-behind flush
   (`metis.ledger.writer`).

Every response carries ``x-metis-request-id``. Nothing on this path touches
the database except a spend-counter lease grant (`metis.ledger.counters`) or
the first use of a workspace's provider credential. `CallPath` is a mixin of
`metis.gateway.app.Gateway`, which owns the caches, counters and writer it
uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from sqlalchemy.exc import DBAPIError

from metis.events import GatewayQuotaExceeded
from metis.gateway import caps, http_io, metrics, upstream
from metis.gateway.auth import AuthFailure, KeyCache, Resolved
from metis.gateway.estimate import estimate as estimate_usage
from metis.gateway.http_client import (
    InvalidResponse,
    Response,
    ServerDisconnected,
    UpstreamClient,
    UpstreamError,
    describe,
)
from metis.gateway.http_io import Header, Receive, Send
from metis.gateway.inbound.base import InboundAPI
from metis.gateway.plan import RouteContext, RoutePlan
from metis.gateway.stamping import CallFacts, call_event, route_event, usage_record
from metis.gateway.streaming import SSEUsageTap
from metis.gateway.translate.errors import TranslationError
from metis.gateway.upstream import CredentialCache, UpstreamCredential
from metis.gateway.upstreams import family_of
from metis.gateway.upstreams.base import Outgoing
from metis.gateway.upstreams.directory import ProviderDirectory
from metis.gateway.usage import Tokens
from metis.gateway.worst_case import WorstCase
from metis.ids import fast_ulid
from metis.jsonutil import DECODE_ERRORS
from metis.ledger.counters import CapExceeded, CountersUnavailable, Reservation, SpendCounters
from metis.ledger.writer import PendingEvent, WriteBehind
from metis.money import from_nanousd
from metis.pricing import Priced, has_price, price
from metis.security.fields import (
    ID_MAX,
    MODEL_MAX,
    FieldError,
    bounded,
    bounded_optional,
    check_text,
)
from metis.security.throttle import FailureThrottle
from metis.timeutil import iso, utcnow

log = logging.getLogger("metis.gateway")

BODY_ERRORS: tuple[type[Exception], ...] = (*DECODE_ERRORS, msgspec.ValidationError)

RELAYED_ERROR_HEADERS = (b"retry-after", b"retry-after-ms", b"x-should-retry")
"""Headers of an upstream error answer that reach the client (when to retry, if at all)."""


_REQ = {s: metrics.REQUESTS.labels(s) for s in ("openai", "anthropic", "gemini")}


def request_id() -> str:
    """``req_<ULID>``: millisecond time + 80 random bits, Crockford base32 (26 chars).

    Equivalent to ``metis.ids.new_id("req")`` at a fraction of its cost
    (`metis.ids.fast_ulid`; reseeded in forked workers).
    """
    return "req_" + fast_ulid()


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
    upstream_headers: Sequence[Header] = ()
    estimate: str | None = None
    """Why the call must be recorded at its worst case: the upstream accepted it but its
    answer could not be read in full (`metis.gateway.estimate.REASONS`)."""


@dataclass
class Call:
    """Per-request state handed to the forwarder."""

    request_id: str
    api: InboundAPI
    path: str
    query: bytes
    resolved: Resolved
    raw: bytes
    req: Any  # the API's decoded request Struct
    headers: dict[bytes, bytes]
    started_at: Any
    t0: float
    stream: bool
    reservation: Reservation | None = None
    worst: WorstCase | None = None  # read under a cap, or when a call's usage is unreadable
    broken_nanousd: int = 0
    """Estimated cost of an attempt that was sent, broke and falls back to the next target
    (recorded apart); settled at once, before the next attempt reserves afresh."""
    attempts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def shape(self) -> str:
        return self.api.shape

    @property
    def endpoint(self) -> str:
        return self.api.name


def relayed_headers(resp: Response) -> list[Header]:
    """`RELAYED_ERROR_HEADERS` of an upstream answer, as sent."""
    h = resp.headers
    return [(k, h[k.decode()].encode("latin-1")) for k in RELAYED_ERROR_HEADERS if k.decode() in h]


def _param(shape: str, name: str) -> dict[str, str]:
    """OpenAI errors name the offending field in ``param``; Anthropic's envelope has none."""
    return {"param": name} if shape == "openai" else {}


class CallPath:
    """The request path of `metis.gateway.app.Gateway` (see the module docstring)."""

    keys: KeyCache
    creds: CredentialCache
    providers: ProviderDirectory
    counters: SpendCounters
    writer: WriteBehind
    stats: Stats
    caps_fail_open: bool
    plan_route: Callable[[RouteContext], RoutePlan]
    cross_shape: Any
    session: UpstreamClient | None
    throttle: FailureThrottle | None  # the process's failed-auth throttle (None: off)

    # -- answers (also used by metis.gateway.translate.forward) ---------------------
    @staticmethod
    async def _respond(
        send: Send,
        status: int,
        body: bytes,
        rid: str,
        ctype: Header = http_io.JSON,
        extra: Sequence[Header] = (),
    ) -> None:
        await http_io.respond(send, status, body, rid, ctype, extra)

    async def _error(
        self, send: Send, shape: str, kind: str, message: str, rid: str, **fields: Any
    ) -> int:
        return await http_io.error(send, shape, kind, message, rid, **fields)

    async def authenticate_key(
        self, scope: dict[str, Any], headers: dict[bytes, bytes], send: Send, shape: str, rid: str
    ) -> Resolved | None:
        """The request's key, or None after answering 401 (or 429 when throttled) in ``shape``.

        A key this process has cached is accepted at once: the failed-auth throttle
        (`metis.security.throttle`, per client address and per key prefix) is consulted
        only for a key not cached, before the database lookup, and counts each failure.
        So valid keys are never slowed; a throttled guesser gets 429 with Retry-After
        without its guess being looked up (a `gw_` key has 256 random bits: the throttle
        bounds the probing rate and the lookups it costs, not the odds of a hit).
        """
        token = http_io.token(headers)
        th = self.throttle
        keys: tuple[str, ...] = ()
        try:
            hit = self.keys.cached(token)
            if hit is not None:
                return hit
            if th is not None and th.enabled:
                client = scope.get("client")
                keys = th.keys(client[0] if client else None, token or None)
                wait = th.retry_after(*keys)
                if wait is not None:
                    metrics.AUTH_THROTTLED.labels(shape).inc()
                    await http_io.error(
                        send,
                        shape,
                        "auth_throttled",
                        "too many failed authentication attempts; retry later",
                        rid,
                        ((b"retry-after", th.retry_after_header(wait).encode()),),
                    )
                    return None
            return await self.keys.authenticate(token)
        except AuthFailure as e:
            if th is not None and th.enabled:
                if not keys:
                    client = scope.get("client")
                    keys = th.keys(client[0] if client else None, token or None)
                th.failed(*keys)
            await self._error(send, shape, "authentication_error", str(e), rid)
            return None

    # -- the request path ----------------------------------------------------
    async def handle(
        self, scope: dict[str, Any], receive: Receive, send: Send, api: InboundAPI
    ) -> None:
        """One billed request of ``api`` (a POST to ``api.path``)."""
        t0 = time.perf_counter()
        rid = request_id()
        self.stats.requests += 1
        shape = api.shape
        _REQ[shape].inc()
        headers = dict(scope["headers"])
        resolved = await self.authenticate_key(scope, headers, send, shape, rid)
        if resolved is None:
            return
        raw = await http_io.read_body_or_answer(receive, send, headers, scope, shape, rid)
        if raw is None:
            return
        try:
            req = api.decoder.decode(raw)
        except BODY_ERRORS:
            await self._error(send, shape, "invalid_request", "body must be a JSON object", rid)
            return
        if api.bind is not None:
            refused = api.bind(req, scope["path"])
            if refused is not None:
                await self._error(send, shape, "not_found", refused, rid)
                return
        model = req.model
        if not isinstance(model, str) or not model:
            await self._error(send, shape, "invalid_request", "'model' is required", rid)
            return
        try:  # stored in records, rollups and events: refused at the edge, never forwarded
            check_text("model", model, MODEL_MAX)
        except FieldError as e:
            await self._error(send, shape, "invalid_request", str(e), rid, **_param(shape, "model"))
            return
        snap = resolved.snapshot
        allowed = snap.allowed_models
        if allowed is not None and model not in allowed:
            await self._error(
                send, shape, "permission_error", f"model {model!r} is not allowed for this key", rid
            )
            return
        plan = self.plan_route(
            RouteContext(
                principal=resolved.principal,
                snapshot=snap,
                inbound_shape=shape,
                model=model,
                raw_body=raw,
                spent=self._spent,
                endpoint=api.name,
                default_provider=api.default_provider,
                providers=self.providers.of(resolved.principal.workspace_id),
            )
        )
        call = Call(
            request_id=rid,
            api=api,
            path=scope["path"],
            query=scope.get("query_string", b""),
            resolved=resolved,
            raw=raw,
            req=req,
            headers=headers,
            started_at=utcnow(),
            t0=t0,
            stream=api.streams(req),
        )
        candidates = [f"{t.provider}:{t.model}" for t in plan.targets]
        # Hard caps: reserve the worst case over the plan's targets.
        scopes = caps.counters_for(snap, call.started_at)
        capped = any(s.cap_nanousd is not None for s in scopes)
        refusal = api.admit(req, capped)
        if refusal is not None:
            await self._error(send, shape, "permission_error", refusal, rid)
            return
        est = 0
        if capped:  # the worst case is read only under a cap (a second, partial decode)
            call.worst = api.worst_case(req, raw)
            ws = resolved.principal.workspace_id
            for t in plan.targets:
                pp = self.providers.price_provider(ws, t.provider)
                # The target, and any model the provider may bill instead (OpenRouter).
                for m in (t.model, *call.worst.alternatives):
                    m_est = caps.estimate(pp, m, len(raw), call.worst, name=t.provider)
                    if m_est is None:
                        await self._error(
                            send,
                            shape,
                            "permission_error",
                            f"model {m!r} has no known price and this key has a hard "
                            "spend cap; unpriced models cannot be called under a cap",
                            rid,
                        )
                        return
                    est = max(est, m_est)
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
                if call.broken_nanousd:  # no final record settled it: broken attempts did bill
                    self.counters.settle(call.reservation, call.broken_nanousd)
                else:
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
                    attempts=call.attempts,  # a broken attempt may precede the refusal
                    inbound_shape=call.shape,
                    ts=call.started_at,
                ),
            ],
        )
        # The SDKs (and Claude Code) honour x-should-retry: a spent cap will not
        # recover by retrying in seconds; retry-after says when it will.
        wait = max(1, math.ceil((ce.resets_at - utcnow()).total_seconds()))
        await http_io.error(
            send,
            call.shape,
            "quota_exceeded",
            f"{ce.scope} spend cap reached: ${current} of ${limit}; resets at {iso(ce.resets_at)}",
            call.request_id,
            ((b"x-should-retry", b"false"), (b"retry-after", str(wait).encode())),
            scope=ce.scope,
            limit_usd=limit,
            current_usd=current,
            # OpenAI's own usage-limit errors carry resets_at as Unix seconds, and Codex
            # reads it as an integer: an ISO string makes it discard the whole error and
            # retry (tests/clients/test_codex.py). Anthropic's shape keeps ISO 8601.
            resets_at=int(ce.resets_at.timestamp())
            if call.shape == "openai"
            else iso(ce.resets_at),
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
            entry: dict[str, Any] = {
                "target": candidates[i],
                "status": att.status,
                "http_status": att.http_status,
                "latency_ms": int((time.perf_counter() - t_att) * 1000),
            }
            if att.status == "unsupported_target":
                entry["reason"] = att.message  # why the target was skipped
            if att.estimate is not None:
                entry["estimate_reason"] = att.estimate
            call.attempts.append(entry)
            if not att.answered and att.estimate is not None and i < len(targets) - 1:
                # Sent and billed, but broken: recorded apart (at its estimate) before the
                # next target is tried, so neither the ledger nor the caps lose it.
                self._stamp(
                    call,
                    target.provider,
                    target.model,
                    None,
                    Tokens(),
                    None,
                    att.status,
                    att.http_status,
                    estimate=att.estimate,
                    attempt=i,
                )
                if not await self._renew_reservation(send, call, candidates):
                    return  # the caps refused the next attempt (answered 429 or 503)
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
                    last.upstream_headers,
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
            self._stamp(
                call,
                t.provider,
                t.model,
                None,
                Tokens(),
                None,
                last.status,
                http_status,
                estimate=last.estimate,
            )
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

    async def _renew_reservation(self, send: Send, call: Call, candidates: list[str]) -> bool:
        """After a billed broken attempt: settle its estimate, then reserve the worst case
        afresh before the next target, which the caps admit like a request of its own.

        So the overshoot bound (settled spend over a cap by at most one reservation per
        process) holds per request even when fallbacks follow broken attempts. False
        after answering the client: the broken attempt used up the cap (429), or the caps
        cannot be checked under ``METIS_CAPS_ON_DB_ERROR=closed`` (503)."""
        res = call.reservation
        if res is None:
            return True
        self.counters.settle(res, call.broken_nanousd)
        call.broken_nanousd = 0
        call.reservation = None
        try:
            call.reservation = await self.counters.reserve(res.caps, res.est_nanousd)
        except CapExceeded as ce:
            await self._quota_exceeded(send, call, ce, candidates)
            return False
        except CountersUnavailable:
            if not self.caps_fail_open:
                metrics.DB_UNAVAILABLE.labels("caps_refused").inc()
                await self._error(
                    send,
                    call.shape,
                    "unavailable",
                    "spend caps cannot be checked: the database is unavailable "
                    "(METIS_CAPS_ON_DB_ERROR=closed); retry later",
                    call.request_id,
                )
                return False
            metrics.DB_UNAVAILABLE.labels("caps_fail_open").inc()
            call.reservation = await self.counters.reserve(res.caps, res.est_nanousd, leased=False)
        return True

    def _spent(self, scope: str, scope_id: str) -> int:
        from metis.timeutil import day_key, month_key

        now = utcnow()
        period = month_key(now) if scope.endswith("monthly") else day_key(now)
        return self.counters.spent((scope, scope_id, period))

    # -- one attempt -----------------------------------------------------------
    async def forward(
        self, send: Send, receive: Receive, call: Call, target: Any, *, is_last: bool
    ) -> Attempt:
        """Forward ``call`` to one target; the per-attempt seam for routing.

        The target's credential decides its family: a family of the call's wire shape
        that serves the call's API gets it natively; one of another shape goes through
        ``cross_shape`` (translation) when installed; anything else is skipped as an
        ``unsupported_target`` (and the next candidate tried)."""
        provider = target.provider
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
        fam = family_of(cred.family)
        if fam.wire != call.shape:
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
        if call.api.name not in fam.apis:
            return Attempt(
                False,
                "unsupported_target",
                502,
                True,
                "upstream_error",
                f"{provider}:{target.model} ({cred.family}) cannot serve a {call.endpoint} request",
            )
        body, withhold = call.api.prepare(call.req, call.raw, target.model)
        try:
            out = fam.request(cred, call, call.api.name, target.model, body)
        except TranslationError as exc:  # the family cannot express the request (400, no retry)
            status = await self._error(
                send, call.shape, "invalid_request", exc.message, call.request_id
            )
            return Attempt(True, "invalid_request", status)
        return await self._send_upstream(send, receive, call, target, cred, out, withhold, is_last)

    async def _send_upstream(
        self,
        send: Send,
        receive: Receive,
        call: Call,
        target: Any,
        cred: UpstreamCredential,
        out: Outgoing,
        withhold: bool,
        is_last: bool,
    ) -> Attempt:
        provider = target.provider
        assert self.session is not None
        try:
            # The header wait is bounded by READ_TIMEOUT_S, each body read by
            # STREAM_IDLE_TIMEOUT_S (metis.gateway.http_client).
            resp = await self.session.post(
                out.url, out.body, out.headers, timeout=upstream.READ_TIMEOUT_S
            )
        except (TimeoutError, UpstreamError) as e:
            # Sent but unanswered: the provider may have run (and billed) it. A
            # connection that never opened sent nothing.
            return broken_attempt(e, sent=was_sent(e))
        try:
            if resp.status >= 400:
                if resp.status == 401:
                    self.creds.invalidate(call.resolved.principal.workspace_id, provider)
                try:
                    data = upstream.scrub_secret(await resp.read(), cred)
                except (TimeoutError, UpstreamError):
                    data = b""
                ctype = resp.headers.get("content-type", "application/json").encode()
                if out.adapter is not None:  # an answer not in the wire shape (Bedrock)
                    data = family_of(cred.family).error_body(resp.status, resp.headers, data)
                    ctype = b"application/json"
                relayed = relayed_headers(resp)
                retryable = resp.status == 429 or resp.status >= 500
                if retryable and not is_last:
                    return Attempt(
                        False, "upstream_error", resp.status, True, None, "", data, ctype, relayed
                    )
                await self._respond(
                    send, resp.status, data, call.request_id, (b"content-type", ctype), relayed
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
                return await self._plain(send, call, target, resp, cred, out)
            return await self._stream(send, receive, call, target, resp, cred, withhold, out)
        finally:
            resp.release()

    async def _plain(
        self,
        send: Send,
        call: Call,
        target: Any,
        resp: Response,
        cred: UpstreamCredential,
        out: Outgoing | None = None,
    ) -> Attempt:
        try:
            data = await resp.read()
        except (TimeoutError, UpstreamError) as e:  # a 2xx head, then the body broke
            return broken_attempt(e, sent=True)
        ctype = resp.headers.get("content-type", "application/json").encode()
        if out is not None and out.adapter is not None:  # into the wire shape (Bedrock)
            data = out.adapter.plain(data, resp.headers)
            ctype = b"application/json"
        tokens = Tokens()
        rid_up = model = None
        unread: str | None = None
        try:
            rid_up, model = call.api.read_answer(data, tokens)
        except BODY_ERRORS:  # a 2xx body cut short or not JSON: its usage is unknown
            unread = "truncated_body"
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
            estimate=unread,
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
        out_req: Outgoing | None = None,
    ) -> Attempt:
        adapter = (
            out_req.adapter.stream(resp.headers)
            if out_req is not None and out_req.adapter is not None
            else None
        )
        ctype = (
            b"text/event-stream; charset=utf-8"
            if adapter is not None
            else resp.headers.get("content-type", "text/event-stream").encode()
        )
        await send(
            {
                "type": "http.response.start",
                "status": resp.status,
                "headers": [
                    (b"content-type", ctype),
                    (b"cache-control", b"no-cache"),
                    (b"x-metis-request-id", call.request_id.encode()),
                ],
            }
        )
        tap = SSEUsageTap(call.api.tap, withhold_usage_chunk=withhold)
        gone = asyncio.Event()

        async def watch() -> None:
            while True:
                msg = await receive()
                if msg["type"] == "http.disconnect":
                    gone.set()
                    return

        watcher = asyncio.create_task(watch())
        status = "ok"
        unread: str | None = None
        try:
            # A client that disconnects mid-stream: keep reading the upstream to its end
            # so its usage (the last event) is still recorded.
            async for chunk in resp.iter_any():
                out = tap.feed(adapter.feed(chunk) if adapter is not None else chunk)
                if out and not gone.is_set():
                    await send({"type": "http.response.body", "body": out, "more_body": True})
            out = tap.feed(adapter.close()) if adapter is not None else b""
            out += tap.flush()
        except (TimeoutError, UpstreamError):
            status = "upstream_error"
            out = tap.flush()
            if not tap.final:  # cut before its final usage: billed, usage unknown
                unread = "stream_cut"
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
            estimate=unread,
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
        *,
        estimate: str | None = None,
        attempt: int | None = None,
    ) -> None:
        """Price and queue one call's record and event, and settle its reservation.

        ``estimate`` (a reason of `metis.gateway.estimate.REASONS`): the upstream
        accepted the call but its usage could not be read; it is recorded at its worst
        case (``cost_source = estimated``) and that settles the caps. ``attempt``: the
        index of a broken attempt a fallback follows, recorded apart (dedupe key
        ``<request id>#<attempt>``); its cost goes to ``broken_nanousd``, settled by
        `_renew_reservation` before the next attempt."""
        # What the upstream reports is stored: bounded (a prefix and a hash) like any
        # value Metis must record (`metis.security.fields.bounded`).
        model_raw = bounded(reported_model or target_model, MODEL_MAX)
        correlation_id = bounded_optional(correlation_id, ID_MAX)
        pp = self.providers.price_provider(call.resolved.principal.workspace_id, provider)
        worst_cost: int | None = None
        if estimate is not None:
            if call.worst is None:  # no cap read it: only on this fault path
                call.worst = call.api.worst_case(call.req, call.raw)
            seen = tokens
            tokens, worst_cost = estimate_usage(
                pp, target_model, len(call.raw), call.worst, seen, name=provider
            )
            for alt in call.worst.alternatives:  # a model the provider may have billed instead
                _, alt_cost = estimate_usage(
                    pp, alt, len(call.raw), call.worst, seen, name=provider
                )
                if worst_cost is not None and alt_cost is not None:
                    worst_cost = max(worst_cost, alt_cost)
        try:
            priced = price(
                pp,
                model_raw,
                input_tokens=tokens.input,
                output_tokens=tokens.output,
                cached_input_tokens=tokens.cached,
                cache_creation_input_tokens=tokens.cache_creation,
                cache_write_1h_tokens=min(tokens.cache_write_1h, tokens.cache_creation),
                reasoning_tokens=min(tokens.reasoning, tokens.output),
                at=call.started_at,
                name=provider,
            )
        except ValueError:
            priced = Priced(None, "none", None, model_raw.lower())
        metadata: dict[str, Any] | None = None
        if estimate is not None:
            metadata = {"estimated": True, "estimate_reason": estimate}
            if worst_cost is not None:
                priced = Priced(
                    worst_cost, "estimated", priced.pricing_version, priced.model_normalized
                )
        elif tokens.stated_cost_nanousd is not None:
            priced, metadata = stated(priced, tokens.stated_cost_nanousd, provider)
        elif priced.cost_nanousd is None and not has_price(
            pp, target_model, name=provider, at=call.started_at
        ):
            self.stats.unpriced_calls += 1
            metrics.UNPRICED_CALLS.labels(provider).inc()
        if status not in ("ok", "client_disconnected"):
            metrics.UPSTREAM_ERRORS.labels(provider).inc()
        if attempt is not None:
            call.broken_nanousd += priced.cost_nanousd or 0
        elif call.reservation is not None:
            self.counters.settle(call.reservation, (priced.cost_nanousd or 0) + call.broken_nanousd)
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
            metadata=metadata,
            estimate=estimate,
            attempt=attempt,
        )
        self.writer.add(usage_record(facts), [call_event(facts)])


def was_sent(e: Exception) -> bool:
    """Whether a request whose exchange failed with ``e`` reached the upstream: a timeout
    awaiting the answer, or a connection that broke or answered garbage after the request
    was written. Not: a connection that never opened (`ConnectFailed`) or a request
    refused before writing (a bad header or URL). A pooled connection the upstream closed
    just as the request was written also reads as sent (the estimate errs high; the
    provider's report corrects it)."""
    return isinstance(e, (TimeoutError, ServerDisconnected, InvalidResponse))


def broken_attempt(e: Exception, *, sent: bool) -> Attempt:
    """The attempt whose exchange broke with ``e`` (a timeout or an `UpstreamError`);
    ``sent``: the request reached the upstream, so it is recorded at its worst case."""
    if isinstance(e, TimeoutError):
        est = "upstream_timeout" if sent else None
        return Attempt(
            False, "timeout", 504, True, "upstream_timeout", "upstream timed out", estimate=est
        )
    assert isinstance(e, UpstreamError)
    return Attempt(
        False,
        "connect_error",
        502,
        True,
        "upstream_error",
        f"upstream connection failed: {describe(e)}",
        estimate="upstream_disconnected" if sent else None,
    )


def stated(priced: Priced, stated_nanousd: int, provider: str) -> tuple[Priced, dict[str, Any]]:
    """A provider-stated cost (OpenRouter's ``usage.cost``) as the record's cost
    (``cost_source = provider_reported``), with the computed price beside it in the
    record's ``metadata`` for comparison (``computed_cost_nanousd``, None when unpriced;
    a difference is counted in ``metis_gateway_stated_cost_mismatch_total``)."""
    meta: dict[str, Any] = {
        "stated_cost_nanousd": stated_nanousd,
        "computed_cost_nanousd": priced.cost_nanousd,
        "computed_pricing_version": priced.pricing_version,
    }
    if priced.cost_nanousd != stated_nanousd:
        metrics.STATED_COST_MISMATCH.labels(provider).inc()
    out = Priced(
        stated_nanousd, "provider_reported", priced.pricing_version, priced.model_normalized
    )
    return out, meta
