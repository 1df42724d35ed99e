"""A real webhook receiver for alert tests: a Starlette app on 127.0.0.1 that records posts."""

import json
import threading
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from metis.alerts.sinks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        # Exact: JSON numbers with a fraction decode as Decimal.
        return json.loads(self.body, parse_float=Decimal)

    def signature_ok(self, secret: str) -> bool:
        return verify(
            secret,
            self.headers.get(TIMESTAMP_HEADER.lower(), ""),
            self.body,
            self.headers.get(SIGNATURE_HEADER.lower(), ""),
        )


@dataclass
class Receiver:
    """Records every POST; `fail_with` makes it answer that status instead."""

    posts: list[Received] = field(default_factory=list)
    fail_with: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Starlette:
        async def hook(request: Request) -> JSONResponse:
            body = await request.body()
            headers = {k.lower(): v for k, v in request.headers.items()}
            with self.lock:
                self.posts.append(Received(request.url.path, headers, body))
            if self.fail_with:
                return JSONResponse({"error": "nope"}, status_code=self.fail_with)
            return JSONResponse({"ok": True})

        return Starlette(routes=[Route("/{path:path}", hook, methods=["POST"])])

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [p for p in self.posts if p.path == path]
