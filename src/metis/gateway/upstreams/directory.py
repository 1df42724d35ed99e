"""Each workspace's upstream names, in memory: what ``provider/model`` can address.

Routing plans and cap admission run before any credential is decrypted and
without I/O; they still need to know which provider names a workspace has
(``groq/llama-3.3-70b-versatile`` addresses the workspace's ``groq``
credential; ``meta-llama/Llama-3.3-70B`` addresses nothing and goes to the
inbound shape's provider as it is) and which genai-prices id prices each
(a reservation is priced before the upstream is called). The directory holds
the newest active ``inference`` credential per (workspace, name): its family
and genai-prices id, no secret. It is reloaded with the gateway's key cache
(`metis.gateway.auth.KeyCache.companions`), i.e. when the ``credentials``
configuration version moves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from metis.gateway.upstreams import catalog


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    name: str
    family: str
    price_provider: str | None  # effective genai-prices id; None: the prices file only


_EMPTY: Mapping[str, ProviderInfo] = {}


def builtin_price_provider(name: str) -> str | None:
    """The genai-prices id a provider name implies without a credential (its family's or
    preset's): what an error record of an unconfigured ``openai`` target is priced by."""
    try:
        fam = catalog.infer_family(name, None)
    except Exception:
        return None
    return catalog.default_price_provider(name, fam)


class ProviderDirectory:
    """``{workspace_id: {name: ProviderInfo}}`` (see the module docstring)."""

    def __init__(self) -> None:
        self._by_ws: dict[str, dict[str, ProviderInfo]] = {}

    def read(self, conn: Connection) -> dict[str, dict[str, ProviderInfo]]:
        from metis.db.tables import provider_credentials as pc

        q = (
            select(pc.c.workspace_id, pc.c.provider, pc.c.family, pc.c.price_provider)
            .where(pc.c.purpose_inference.is_(True), pc.c.removed_at.is_(None))
            .order_by(pc.c.created_at, pc.c.id)
        )
        out: dict[str, dict[str, ProviderInfo]] = {}
        for ws, name, family, pp in conn.execute(q):
            fam = family or name
            eff = pp or catalog.default_price_provider(name, fam)
            out.setdefault(ws, {})[name] = ProviderInfo(name, fam, None if eff == "none" else eff)
        return out  # newest per (workspace, name) wins: ordered by creation

    def install(self, data: Any) -> None:
        self._by_ws = data

    def of(self, workspace_id: str) -> Mapping[str, ProviderInfo]:
        """The workspace's provider names (empty when it has none)."""
        return self._by_ws.get(workspace_id, _EMPTY)

    def price_provider(self, workspace_id: str, name: str) -> str | None:
        """The genai-prices id pricing ``name``'s models in this workspace."""
        info = self._by_ws.get(workspace_id, _EMPTY).get(name)
        return info.price_provider if info is not None else builtin_price_provider(name)

    def family(self, workspace_id: str, name: str) -> str | None:
        info = self._by_ws.get(workspace_id, _EMPTY).get(name)
        return info.family if info is not None else None
