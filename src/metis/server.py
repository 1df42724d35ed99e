"""The ``metis serve`` application: gateway, APIs, dashboard, scheduler in one ASGI app.

The gateway's inference routes are dispatched before anything else by a plain
path lookup, so the hot path pays for no framework routing or middleware;
then its path-prefix routes (ids in the path). Every other path goes to the
FastAPI app (admin/analytics API, ingest API, cron trigger, metrics,
dashboard), which carries the OpenAPI document at ``/openapi.json``, except
that a ``/v1/...`` path none of them serves is the gateway's: it answers in
the inbound shape's error envelope (`metis.gateway.inbound.unknown`), as
does a WebSocket handshake there (426: no WebSockets here).

Components register themselves here, in `create_app`: each contributes
routers to the FastAPI app and startup/shutdown hooks to the lifespan.
"""

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.routing import Match

from metis import __version__
from metis.alerts.service import install as install_alerts
from metis.analytics.api import install as install_analytics
from metis.analytics.deps import throttle_for
from metis.analytics.reconciliation_api import install as install_reconciliation
from metis.config import Settings, get_settings
from metis.gateway.app import install as install_gateway
from metis.gateway.routing.router import install as install_routing
from metis.ingest.otel.receiver import install as install_otel
from metis.ingest.push import install as install_push
from metis.ingest.scheduler import install as install_pull_sync
from metis.server_errors import install as install_server_errors
from metis.web.apidocs import install as install_apidocs
from metis.web.app import install as install_web

ASGIApp = Callable[
    [dict[str, Any], Callable[..., Awaitable[Any]], Callable[..., Awaitable[Any]]], Awaitable[None]
]
Hook = Callable[[], Awaitable[None]]


class Components:
    """What the parts of Metis contribute to the server."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.gateway_routes: dict[str, ASGIApp] = {}
        self.gateway_prefixes: list[tuple[str, ASGIApp]] = []
        self.gateway_unknown: ASGIApp | None = None
        self.startup: list[Hook] = []
        self.shutdown: list[Hook] = []
        self.api = FastAPI(
            title="Metis API",
            version=__version__,
            description="Admin, analytics and ingest API of Metis.",
            lifespan=self._lifespan,
            # FastAPI's /docs and /redoc load scripts from a CDN: metis.web.apidocs
            # serves them from the package instead, under a CSP.
            docs_url=None,
            redoc_url=None,
        )
        # One failed-auth throttle per process, shared by every surface (the
        # dashboard, the admin, ingest and cron API, and the gateway's auth).
        self.throttle = throttle_for(settings)
        self.api.state.metis_throttle = self.throttle

    @asynccontextmanager
    async def _lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        for hook in self.startup:
            await hook()
        try:
            yield
        finally:
            for hook in reversed(self.shutdown):
                await hook()


def create_app(settings: Settings | None = None) -> ASGIApp:
    """Build the full server app for ``settings`` (read from the environment by default)."""
    settings = settings or get_settings()
    comps = Components(settings)
    # Each component adds its routes and hooks here, e.g.:
    #   from metis.gateway.app import install as install_gateway; install_gateway(comps)
    # Alerts first: its shutdown hook then runs last, after the gateway flushed.
    install_server_errors(comps)  # database down/read-only/full: 503, not 500
    install_alerts(comps)
    install_gateway(comps)
    install_routing(comps)  # after the gateway: plugs into its plan_route/cross_shape seams
    install_analytics(comps)
    install_push(comps)
    install_otel(comps)  # after push: shares its IngestToken security scheme
    install_pull_sync(comps)
    install_reconciliation(comps)
    install_web(comps)
    install_apidocs(comps)
    api = comps.api
    routes = comps.gateway_routes
    prefixes = tuple(comps.gateway_prefixes)
    unknown = comps.gateway_unknown

    def v1_route(scope: dict[str, Any]) -> ASGIApp | None:
        """The gateway's handler of a ``/v1/`` path it has no exact route for (None: the API's)."""
        path = scope["path"]
        for prefix, h in prefixes:
            if path.startswith(prefix):
                return h
        if any(r.matches(scope)[0] is not Match.NONE for r in api.routes):
            return None  # e.g. POST /v1/ingest/usage
        return unknown

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http":
            handler = routes.get(scope["path"])
            if handler is None and scope["path"].startswith("/v1/"):
                handler = v1_route(scope)
            if handler is not None:
                await handler(scope, receive, send)
                return
        elif kind == "websocket" and unknown is not None and scope["path"].startswith("/v1/"):
            await _refuse_websocket(scope, receive, send)
            return
        await api(scope, receive, send)

    app.components = comps  # type: ignore[attr-defined]
    # Served by metis.gateway.protocol's lean request cycle, skipping the dispatch above.
    app.fast_routes = routes  # type: ignore[attr-defined]
    app.fast_prefixes = prefixes  # type: ignore[attr-defined]
    return app


async def _refuse_websocket(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A WebSocket handshake on a gateway path (a server whose own protocol accepted the
    upgrade): 426 when the server can send an HTTP answer, else a close (403)."""
    await receive()  # websocket.connect
    if "websocket.http.response" in scope.get("extensions", {}):
        body = (
            b'{"error":{"message":"WebSocket is not supported; use HTTP","type":'
            b'"invalid_request_error","param":null,"code":"upgrade_required"}}'
        )
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 426,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "websocket.http.response.body", "body": body})
        return
    await send({"type": "websocket.close", "code": 1008})
