"""Plugging the rules into the gateway: ``Gateway.plan_route`` and ``Gateway.cross_shape``.

`install(comps)` (called from `metis.server.create_app` after the gateway)
replaces the gateway's default plan with `Router.plan` and installs the
cross-shape forwarder (`metis.gateway.translate.forward`). The rules file is
polled by a background task every `POLL_INTERVAL_S` (file I/O and YAML
parsing stay off the request path); `Router.plan` itself is pure CPU over the
rules in memory and the gateway's in-memory spend counters.

Embeddings requests are never routed: rules are about generation models
(chat, messages, responses), so an embeddings call always goes to its own
model.

A rule's ``workspace`` (scope or predicate) matches the workspace's id, name
or path; names are refreshed from the database by the same background task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from sqlalchemy import Engine, select

from metis.gateway.plan import RouteContext as GatewayRouteContext
from metis.gateway.plan import RoutePlan, default_target
from metis.gateway.routing.engine import RouteContext, decide
from metis.gateway.routing.rules import Target
from metis.gateway.routing.watcher import POLL_INTERVAL_S, RulesWatcher

log = logging.getLogger("metis.gateway.routing")

WORKSPACE_REFRESH_S = 5.0


class Router:
    """Routing decisions for one gateway process."""

    def __init__(self, watcher: RulesWatcher, engine: Engine | None = None) -> None:
        self.watcher = watcher
        self.engine = engine
        self.workspace_names: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None

    def plan(self, ctx: GatewayRouteContext) -> RoutePlan:
        """The gateway's ``plan_route``: first matching rule, else the request's own model
        (an alias's target, ``provider/model``, or the model at the API's provider)."""
        rules = self.watcher.rules
        alias = rules.aliases.get(ctx.model) if rules.aliases else None
        if getattr(ctx, "endpoint", "chat") == "embeddings" or (
            not rules.rules and not rules.model_fallbacks
        ):
            t = alias or default_target(ctx)
            return RoutePlan([t], reason="alias" if alias is not None else "default")
        p = ctx.principal
        refs = {p.workspace_id, p.workspace_path, self.workspace_names.get(p.workspace_id)}
        rctx = RouteContext(
            model=ctx.model,
            inbound_shape=ctx.inbound_shape,
            workspace_refs=frozenset(r for r in refs if r),
            key_id=p.gateway_key_id,
            user_id=p.user_id,
            team_id=p.team_id,
        )
        own = default_target(ctx)
        default = alias or Target(own.provider, own.model)
        d = decide(rules, rctx, default, ctx.spent)
        return RoutePlan(list(d.candidates), reason=d.reason, rule=d.rule)

    def reachable(self, inbound_shape: str, principal: Any) -> list[str]:
        """Model names a client of ``inbound_shape`` can ask for only because a rule routes
        them (``when.model`` / ``when.model_in`` of the rules that apply to the principal's
        workspace and shape), for ``GET /v1/models``; in rules-file order."""
        p = principal
        refs = {p.workspace_id, p.workspace_path, self.workspace_names.get(p.workspace_id)}
        out: list[str] = []
        for r in self.watcher.rules.rules:
            w = r.when
            if (r.workspace is not None and r.workspace not in refs) or (
                w.workspace is not None and w.workspace not in refs
            ):
                continue
            if w.inbound_shape is not None and w.inbound_shape != inbound_shape:
                continue
            names = [w.model] if w.model is not None else sorted(w.model_in or ())
            out.extend(n for n in names if n not in out)
        return out

    # -- background ------------------------------------------------------------
    async def start(self) -> None:
        await self._refresh_workspaces()
        self._task = asyncio.create_task(self._run(), name="metis-routing-rules")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        since_ws = 0.0
        while True:
            await asyncio.sleep(self.watcher.interval)
            since_ws += self.watcher.interval
            try:
                await asyncio.to_thread(self.watcher.poll)
                if since_ws >= WORKSPACE_REFRESH_S:
                    since_ws = 0.0
                    await self._refresh_workspaces()
            except Exception:
                log.warning("routing rules poll failed", exc_info=True)

    async def _refresh_workspaces(self) -> None:
        if self.engine is None or not any(
            r.workspace or r.when.workspace for r in self.watcher.rules.rules
        ):
            return
        self.workspace_names = await asyncio.to_thread(_workspace_names, self.engine)


def _workspace_names(engine: Engine) -> dict[str, str]:
    from metis.db.tables import workspaces

    with engine.connect() as conn:
        rows = conn.execute(select(workspaces.c.id, workspaces.c.name)).all()
    return {r[0]: r[1] for r in rows}


def install(comps: Any) -> Router | None:
    """Wire routing and translation into the gateway installed on ``comps`` (if any)."""
    gw = getattr(comps, "gateway", None)
    if gw is None:
        return None
    from metis.gateway.translate.forward import cross_shape

    watcher = RulesWatcher(comps.settings.effective_routing_file, interval=POLL_INTERVAL_S)
    router = Router(watcher, gw.engine)
    gw.plan_route = router.plan
    gw.cross_shape = cross_shape
    gw.router = router

    async def preload() -> None:
        # Soft-cap predicates read settled spend from the gateway's counters: learn
        # today's/this month's spend at start, not only of counters used since.
        n = await gw.counters.preload()
        log.info("routing: %d spend counters of the current day/month loaded", n)

    comps.startup.append(preload)
    comps.startup.append(router.start)
    comps.shutdown.append(router.stop)
    return router
