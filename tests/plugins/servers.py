"""Fixtures for servers tests (shared by other areas).

``gateway``: the full ``metis serve`` app (`metis.server.create_app`) running in
a `ServerThread` against the test database, with a workspace ``w`` whose
OpenAI and Anthropic ``inference`` credentials point at ``stub_upstream`` (a
fast deterministic upstream, tests/gateway/stub_upstream.py). Use
``gateway.issue_key(...)`` for a ``gw_`` key, ``gateway.openai(secret)`` /
``gateway.anthropic(secret)`` for SDK clients (``max_retries=0``) and
``gateway.flush()`` to force the write-behind flush before reading the ledger.
``gateway_factory(upstream_url, workspace="w", secrets={provider: key})`` builds
one against another upstream (e.g. the simulator, with its generated keys).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine

from metis.util.server_thread import ServerThread


@dataclass
class GatewayServer:
    url: str
    app: Any
    engine: Engine
    workspace_id: str
    upstream_url: str
    _threads: list[ServerThread] = field(default_factory=list)
    _clients: list[Any] = field(default_factory=list)

    @property
    def gw(self) -> Any:
        return self.app.components.gateway

    def issue_key(
        self,
        name: str = "k",
        *,
        user: str | None = None,
        team: str | None = None,
        allowed_models: list[str] | None = None,
        daily_cap_usd: str | Decimal | None = None,
    ) -> tuple[str, str]:
        """Issue a key in workspace ``w`` (creating user/team); returns (key_id, secret)."""
        from metis.identity.keys import issue_key
        from metis.money import to_nanousd

        with self.engine.begin() as conn:
            key, secret = issue_key(
                conn,
                name=name,
                workspace=self.workspace_id,
                user=user,
                team=team,
                allowed_models=allowed_models,
                daily_cap_nanousd=None if daily_cap_usd is None else to_nanousd(daily_cap_usd),
                create_user=True,
                create_team=True,
            )
        self.wait_keys()
        return key.id, secret

    def add_provider(
        self,
        provider: str,
        base_url: str | None,
        secret: str,
        *,
        family: str | None = None,
        price_provider: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> str:
        """Add an ``inference`` credential to workspace ``w`` (any family; docs/providers.md)
        and make the gateway see it now; returns its id."""
        from metis.config import get_settings
        from metis.credentials import add_credential

        with self.engine.begin() as conn:
            cred = add_credential(
                conn,
                get_settings(),
                workspace_id=self.workspace_id,
                provider=provider,
                purposes=["inference"],
                secret=secret,
                base_url=base_url,
                family=family,
                price_provider=price_provider,
                options=options,
            )
        self.wait_keys()
        return cred.id

    def run(self, coro: Any, timeout: float = 10.0) -> Any:
        """Run a coroutine on the server's event loop and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.gw.loop).result(timeout)

    def wait_keys(self) -> None:
        """Make the key cache reload now (instead of waiting for its poll)."""
        self.run(self.gw.keys.poll_once())

    def flush(self) -> None:
        """Write the gateway's write-behind buffer now."""
        self.run(self.gw.writer.flush())

    def records(self) -> dict[str, dict[str, Any]]:
        """Every usage record after a flush, keyed by its correlation id (the upstream's
        response id): what the client tests compare with what the client saw."""
        from sqlalchemy import select

        from metis.db.tables import usage_records

        self.flush()
        with self.engine.connect() as c:
            rows = c.execute(select(usage_records)).mappings()
            return {r["correlation_id"]: dict(r) for r in rows}

    def openai(self, secret: str, **kw: Any) -> Any:
        import openai

        c = openai.OpenAI(api_key=secret, base_url=self.url + "/v1", max_retries=0, **kw)
        self._clients.append(c)
        return c

    def anthropic(self, secret: str, **kw: Any) -> Any:
        import anthropic

        c = anthropic.Anthropic(api_key=secret, base_url=self.url, max_retries=0, **kw)
        self._clients.append(c)
        return c

    def close(self) -> None:
        """Close the SDK clients handed out, then stop the servers."""
        for c in self._clients:
            c.close()
        self._clients.clear()
        for t in self._threads:
            t.stop()


UPSTREAM_SECRETS = {
    "openai": "sk-test-openai-upstream-0001",
    "anthropic": "sk-ant-test-anthropic-upstream-0001",
}


def start_gateway(
    engine: Engine,
    upstream_url: str,
    workspace: str = "w",
    secrets: dict[str, str] | None = None,
) -> GatewayServer:
    from metis.config import get_settings
    from metis.credentials import add_credential
    from metis.server import create_app
    from metis.workspaces import add_workspace

    settings = get_settings()
    with engine.begin() as conn:
        ws = add_workspace(conn, workspace)
        for provider in ("openai", "anthropic"):
            add_credential(
                conn,
                settings,
                workspace_id=ws.id,
                provider=provider,
                purposes=["inference"],
                mode="standard",
                # provider-shaped test keys (the simulator checks the sk- / sk-ant- prefix)
                secret="sk-ant-test-upstream-0001"
                if provider == "anthropic"
                else "sk-test-openai-upstream-0001",
                base_url=upstream_url,
            )
    app = create_app(settings)
    srv = ServerThread(app).start()
    return GatewayServer(srv.url, app, engine, ws.id, upstream_url, [srv])


@pytest.fixture
def stub_upstream() -> Iterator[str]:
    """The URL of a fast deterministic OpenAI+Anthropic upstream."""
    from tests.gateway.stub_upstream import app

    with ServerThread(app) as s:
        yield s.url


@pytest.fixture
def gateway_factory(
    metis_env: dict[str, str], engine: Engine
) -> Iterator[Callable[..., GatewayServer]]:
    made: list[GatewayServer] = []

    def make(
        upstream_url: str, workspace: str = "w", secrets: dict[str, str] | None = None
    ) -> GatewayServer:
        g = start_gateway(engine, upstream_url, workspace, secrets)
        made.append(g)
        return g

    yield make
    for g in made:
        g.close()


@pytest.fixture
def gateway(gateway_factory: Callable[..., GatewayServer], stub_upstream: str) -> GatewayServer:
    """The full server against the stub upstream, workspace ``w`` with both credentials."""
    return gateway_factory(stub_upstream)
