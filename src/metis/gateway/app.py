"""The gateway process: its caches, counters, writer and routes (raw ASGI, no framework).

One `Gateway` per server process. It owns the key cache (`metis.gateway.auth`),
the credential cache and pooled upstream client (`metis.gateway.upstream`), the
spend counters (`metis.ledger.counters`) and the write-behind
(`metis.ledger.writer`); the request path is its `metis.gateway.lifecycle.CallPath`
mixin. Routes (`Gateway.routes`, `Gateway.prefix_routes`):

- billed, one `metis.gateway.inbound` module each around the shared lifecycle:
  ``POST /v1/chat/completions``, ``/v1/embeddings``, ``/v1/messages``,
  ``/v1/responses``;
- forwarded unbilled: ``POST /v1/messages/count_tokens``, ``GET|DELETE
  /v1/responses/{id}``, ``POST /v1/responses/{id}/cancel``, ``GET
  /v1/responses/{id}/input_items``; answered by the gateway: ``GET
  /v1/models``, ``GET /v1/models/{id}``; a WebSocket upgrade on
  ``/v1/responses``: 426;
- anything else under ``/v1`` that no other component serves:
  `metis.gateway.inbound.unknown` (404 in the inbound shape's envelope).

Every response carries ``x-metis-request-id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import Engine

from metis.config import Settings
from metis.gateway import http_io
from metis.gateway.auth import KeyCache, SnapshotLoader
from metis.gateway.http_client import UpstreamClient
from metis.gateway.http_io import Receive, Send
from metis.gateway.inbound import azure, chat, embeddings, gemini, messages, responses
from metis.gateway.inbound.base import InboundAPI
from metis.gateway.inbound.count_tokens import count_tokens
from metis.gateway.inbound.models import ModelListCache, list_models, retrieve_model
from metis.gateway.inbound.stored import stored, upgrade_required, wants_websocket
from metis.gateway.inbound.unknown import unknown
from metis.gateway.lifecycle import Attempt, Call, CallPath, Stats, request_id
from metis.gateway.plan import RouteContext, RoutePlan, default_plan
from metis.gateway.upstream import CredentialCache, CredentialResolver, db_resolver, new_client
from metis.gateway.upstreams.directory import ProviderDirectory
from metis.ledger.counters import REFRESH_INTERVAL_S, SpendCounters
from metis.ledger.writer import WriteBehind
from metis.security.throttle import FailureThrottle

__all__ = ["Attempt", "Call", "Gateway", "Stats", "install", "request_id"]

log = logging.getLogger("metis.gateway")

Handler = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]


class Gateway(CallPath):
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
        self.providers = ProviderDirectory()
        self.keys.companions.append(self.providers)
        self.model_lists = ModelListCache()
        self.keys.on_change.append(self.creds.invalidate)
        self.keys.on_change.append(self.model_lists.invalidate)
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
        self.throttle: FailureThrottle | None = None  # set by `install` (Components.throttle)
        self._tasks: list[asyncio.Task[None]] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    # -- lifecycle -----------------------------------------------------------
    async def startup(self) -> None:
        self.loop = asyncio.get_running_loop()
        if os.environ.get("METIS_SERVER_TUNING") == "1":  # set by `metis serve`
            _tune_interpreter()
        await self.keys.load()
        self.session = new_client(self.settings.upstream_ca_bundle)
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

    # -- routes ----------------------------------------------------------------
    def routes(self) -> dict[str, Handler]:
        """Exact paths (dispatched first, on the fast path of `metis.gateway.protocol`)."""
        return {
            chat.API.path: self._billed(chat.API),
            embeddings.API.path: self._billed(embeddings.API),
            messages.API.path: self._billed(messages.API),
            responses.API.path: self._responses,
            "/v1/messages/count_tokens": self._bind(count_tokens),
            "/v1/models": self._models_list,
            "/v1beta/models": self._bind(gemini.models),
            azure.V1_CHAT.path: self._billed(azure.V1_CHAT),
            azure.V1_EMBEDDINGS.path: self._billed(azure.V1_EMBEDDINGS),
            azure.V1_RESPONSES.path: self._billed(azure.V1_RESPONSES),
        }

    def prefix_routes(self) -> list[tuple[str, Handler]]:
        """Path prefixes (ids in the path) after the exact paths."""
        return [
            ("/v1/responses/", self._bind(stored)),
            ("/v1/models/", self._v1_model),
            ("/v1beta/models/", self._bind(gemini.route)),
            (azure.DEPLOYMENTS, self._azure_deployment),
        ]

    @staticmethod
    def unknown_route() -> Handler:
        """What answers any other path or method under ``/v1`` that no other component serves."""
        return unknown

    def _billed(self, api: InboundAPI) -> Handler:
        async def route(scope: dict[str, Any], receive: Receive, send: Send) -> None:
            if scope["method"] != "POST":
                await unknown(scope, receive, send, api.shape)
                return
            await self.handle(scope, receive, send, api)

        return route

    def _bind(self, handler: Callable[..., Awaitable[None]]) -> Handler:
        async def route(scope: dict[str, Any], receive: Receive, send: Send) -> None:
            await handler(self, scope, receive, send)

        return route

    async def _azure_deployment(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        api = azure.BY_DEPLOYMENT_API.get(azure.deployment_api(scope["path"]) or "")
        if api is None or scope["method"] != "POST":
            await unknown(scope, receive, send, "openai")
            return
        await self.handle(scope, receive, send, api)

    async def _models_list(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if http_io.shape_of(dict(scope["headers"])) == "gemini":
            await gemini.models(self, scope, receive, send)
        else:
            await list_models(self, scope, receive, send)

    async def _v1_model(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        """``/v1/models/{id}``: OpenAI's and Anthropic's model lookup, or Gemini's
        ``models/{model}:generateContent`` & co. (``google-genai`` uses API version v1)."""
        if scope["method"] == "POST" or http_io.shape_of(dict(scope["headers"])) == "gemini":
            await gemini.route(self, scope, receive, send)
        else:
            await retrieve_model(self, scope, receive, send)

    async def _responses(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method == "POST":
            await self.handle(scope, receive, send, responses.API)
        elif method == "GET" and wants_websocket(dict(scope["headers"])):
            await upgrade_required(send)
        else:
            await unknown(scope, receive, send, "openai")

    # -- shared by the unbilled routes -------------------------------------------
    def reachable_models(self, shape: str, principal: Any) -> list[str]:
        """Model names only routing rules make reachable for ``shape`` (none without rules)."""
        router = getattr(self, "router", None)
        return [] if router is None else list(router.reachable(shape, principal))


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


def install(comps: Any) -> Gateway:
    """Register the gateway's hot routes and lifecycle hooks on the server components."""
    from metis.db.engine import make_engine

    # Pooled: the key cache and counter polls read every second (SQLite would
    # otherwise open the file and set its pragmas on each poll).
    gw = Gateway(comps.settings, make_engine(settings=comps.settings, pooled=True))
    gw.throttle = comps.throttle  # one failed-auth throttle per process, shared by every surface
    comps.gateway_routes.update(gw.routes())
    comps.gateway_prefixes.extend(gw.prefix_routes())
    comps.gateway_unknown = gw.unknown_route()
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
