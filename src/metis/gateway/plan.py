"""The routing seam: which upstream targets a request tries, in order.

The gateway calls ``plan_route(ctx)`` after auth and caps and before any
upstream call; the default plan is the request's own model at the provider
of the inbound shape. The routing engine (issue 8) replaces
``Gateway.plan_route`` with its rules evaluation; it may return targets of the
other shape, which the gateway forwards through ``Gateway.cross_shape`` (the
translation hook) -- targets it cannot serve are skipped as failed attempts.
Targets are tried in order while an attempt fails before any byte reached the
client (connection error, timeout, 429 or 5xx upstream); every request emits
exactly one ``route.decided`` with the candidates, the winner index (-1 when
none answered) and the plan's reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec


class TargetLike(Protocol):
    """``provider:model`` (the routing engine's `Target` satisfies this)."""

    @property
    def provider(self) -> str: ...

    @property
    def model(self) -> str: ...


class Target(msgspec.Struct, frozen=True):
    """A default-plan target."""

    provider: str
    model: str

    def __str__(self) -> str:
        return f"{self.provider}:{self.model}"


@dataclass(frozen=True, slots=True)
class RouteContext:
    """What a routing decision may look at (no I/O needed)."""

    principal: Any  # metis.identity.auth.Principal
    snapshot: Any  # metis.identity.auth.KeySnapshot
    inbound_shape: str
    model: str
    raw_body: bytes  # the request body as received (decode lazily when needed)
    spent: Callable[[str, str], int]  # (scope, scope_id) -> nano-USD settled this period
    endpoint: str = "chat"  # chat | messages | embeddings (routing never reroutes embeddings)


@dataclass(frozen=True, slots=True)
class RoutePlan:
    targets: list[Any]  # TargetLike
    reason: str = "default"
    rule: str | None = None


PROVIDER_OF_SHAPE = {"openai": "openai", "anthropic": "anthropic"}


def default_plan(ctx: RouteContext) -> RoutePlan:
    """The request's own model at the inbound shape's provider."""
    return RoutePlan([Target(PROVIDER_OF_SHAPE[ctx.inbound_shape], ctx.model)])


PlanRoute = Callable[[RouteContext], RoutePlan]
