"""The routing seam: which upstream targets a request tries, in order.

The gateway calls ``plan_route(ctx)`` after auth and caps and before any
upstream call; the default plan is the request's own model at the inbound
API's provider (`default_target`): ``provider/model`` (``groq/llama-3.3-70b``)
addresses the workspace's provider of that name, and any other model name
(``gpt-4o``, ``meta-llama/Llama-3.3-70B`` when the workspace has no
``meta-llama`` provider) goes to the inbound API's own provider as it is.
The routing engine (issue 8) replaces ``Gateway.plan_route`` with its rules
evaluation; it may return targets of the other shape, which the gateway
forwards through ``Gateway.cross_shape`` (the translation hook) -- targets
it cannot serve are skipped as failed attempts.
Targets are tried in order while an attempt fails before any byte reached the
client (connection error, timeout, 429 or 5xx upstream); every request emits
exactly one ``route.decided`` with the candidates, the winner index (-1 when
none answered) and the plan's reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from metis.gateway.upstreams.catalog import split_address


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
    default_provider: str = ""  # the inbound API's provider ("" = the shape's)
    providers: Mapping[str, Any] = field(default_factory=dict)  # the workspace's names


@dataclass(frozen=True, slots=True)
class RoutePlan:
    targets: list[Any]  # TargetLike
    reason: str = "default"
    rule: str | None = None


PROVIDER_OF_SHAPE = {"openai": "openai", "anthropic": "anthropic", "gemini": "gemini"}


def default_target(ctx: RouteContext) -> Target:
    """``provider/model`` when ``provider`` is one of the workspace's, else the model at the
    inbound API's provider."""
    addr = split_address(ctx.model)
    if addr is not None and addr[0] in ctx.providers:
        return Target(addr[0], addr[1])
    return Target(ctx.default_provider or PROVIDER_OF_SHAPE[ctx.inbound_shape], ctx.model)


def default_plan(ctx: RouteContext) -> RoutePlan:
    """The request's own model at its provider (`default_target`)."""
    return RoutePlan([default_target(ctx)])


PlanRoute = Callable[[RouteContext], RoutePlan]
