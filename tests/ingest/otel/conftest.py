"""``otlp``: ``metis serve``'s app on a real port with a workspace and ingest tokens.

``otlp.post(signal, body, content_type=..., token=..., **headers)`` posts to
``/otel/v1/<signal>``; ``otlp.rows(source)`` reads the ledger rows of a
source; ``otlp.start(**env)`` starts another server with ``METIS_*`` settings
(e.g. a small ``METIS_OTEL_MAX_BODY_BYTES``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from metis.db.tables import usage_records
from metis.ingest import tokens
from metis.server import create_app
from metis.util.server_thread import ServerThread
from metis.workspaces import add_workspace

PB = "application/x-protobuf"
JSON = "application/json"


@dataclass
class Otlp:
    url: str
    engine: Engine
    workspace_id: str
    token: str
    token_id: str
    monkeypatch: pytest.MonkeyPatch
    app: Any = None
    servers: list[ServerThread] = field(default_factory=list)

    def post(
        self,
        signal: str,
        body: bytes,
        content_type: str = JSON,
        token: str | None = None,
        url: str | None = None,
        **headers: str,
    ) -> httpx.Response:
        h = {"content-type": content_type, **headers}
        tok = self.token if token is None else token
        if tok:
            h["authorization"] = f"Bearer {tok}"
        return httpx.post(f"{url or self.url}/otel/v1/{signal}", content=body, headers=h)

    def rows(self, source: str | None = None) -> list[Any]:
        q = select(usage_records).order_by(usage_records.c.dedupe_key)
        if source is not None:
            q = q.where(usage_records.c.source == source)
        with self.engine.connect() as c:
            return list(c.execute(q).mappings())

    def token_for(self, name: str, **kw: Any) -> tuple[str, str]:
        """Another ingest token of the workspace: (id, secret)."""
        with self.engine.begin() as c:
            tok, secret = tokens.create_token(c, self.workspace_id, name, "otel", **kw)
        return tok.id, secret

    def start(self, **env: str) -> tuple[str, Any]:
        """Another server with these ``METIS_*`` settings: (url, app)."""
        for k, v in env.items():
            self.monkeypatch.setenv(k, v)
        app = create_app()
        srv = ServerThread(app).start()
        self.servers.append(srv)
        return srv.url, app


@pytest.fixture
def otlp(
    metis_env: dict[str, str], engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Otlp]:
    monkeypatch.delenv("METIS_GATEWAY_URLS", raising=False)
    with engine.begin() as c:
        ws = add_workspace(c, "w")
        tok, secret = tokens.create_token(c, "w", "agents", "otel")
    o = Otlp("", engine, ws.id, secret, tok.id, monkeypatch)
    o.url, o.app = o.start()
    yield o
    for s in o.servers:
        s.stop()
