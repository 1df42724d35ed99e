"""HTTP protocol CPU per request, a trivial app: uvicorn's, Metis's, a minimal one.

The same trivial app (decode the JSON body, answer a fixed chat-completion
JSON) served by uvicorn (uvloop) with three ``http=`` protocols, each in its
own process, one after the other and alternated for ``--rounds``: uvicorn's
httptools protocol, `metis.gateway.protocol.GatewayHttpProtocol` (the route
is a fast route), and a minimal httptools protocol that starts one task per
request and nothing else (a floor, not a usable server). Reports utime +
stime of the server process (/proc) per request at an open-loop rate.

    .venv/bin/python bench/protocol_cpu.py --rate 500 --seconds 10 --rounds 3

Used for docs/performance.md "Round 4".
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from typing import Any

import gateway_cpu as c
import gateway_overhead as g

_MODES = ("uvicorn", "metis", "minimal")


def _serve(mode: str, port: int) -> None:
    import httptools
    import msgspec
    import uvicorn

    body = msgspec.json.encode(
        {
            "id": "x",
            "object": "chat.completion",
            "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }
    )
    head = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]

    async def handler(scope: dict[str, Any], receive: Any, send: Any) -> None:
        m = await receive()
        if m["body"]:
            msgspec.json.decode(m["body"])
        await send({"type": "http.response.start", "status": 200, "headers": head})
        await send({"type": "http.response.body", "body": body})

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await handler(scope, receive, send)

    app.fast_routes = {"/v1/chat/completions": handler}  # type: ignore[attr-defined]

    class Minimal(asyncio.Protocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.loop = asyncio.get_running_loop()
            self.parts: list[bytes] = []

        def connection_made(self, transport: Any) -> None:
            self.t = transport
            self.p = httptools.HttpRequestParser(self)

        def data_received(self, data: bytes) -> None:
            self.p.feed_data(data)

        def on_body(self, b: bytes) -> None:
            self.parts.append(b)

        def on_message_complete(self) -> None:
            raw, self.parts = b"".join(self.parts), []
            self.loop.create_task(self.run(raw))

        async def run(self, raw: bytes) -> None:
            if raw:
                msgspec.json.decode(raw)
            self.t.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n%b" % (len(body), body)
            )

    http: Any = {
        "uvicorn": "httptools",
        "metis": "metis.gateway.protocol:GatewayHttpProtocol",
        "minimal": Minimal,
    }[mode]
    uvicorn.run(
        app, port=port, loop="uvloop", http=http, log_level="warning", access_log=False,
        lifespan="off",
    )  # fmt: skip


def _measure(mode: str, rate: int, seconds: float) -> float:
    port = g.free_port()
    p = subprocess.Popen([sys.executable, __file__, "--serve", mode, "--port", str(port)])
    try:
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-x"}
        deadline = time.monotonic() + 20
        while True:  # wait until it answers
            try:
                asyncio.run(g.closed_c1(url, headers, 1))
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        asyncio.run(g.closed_c1(url, headers, 500))  # warm up
        time.sleep(1)
        before = sum(c._cpu_by_pid(p.pid).values())
        res = asyncio.run(g.open_loop(url, headers, rate, seconds))
        after = sum(c._cpu_by_pid(p.pid).values())
        if res["errors"]:
            raise RuntimeError(f"{mode}: {res['errors']} errors")
        return (after - before) / int(res["n"]) * 1000
    finally:
        p.terminate()
        p.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rate", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--serve", choices=_MODES, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        _serve(args.serve, args.port)
        return
    print(f"open loop {args.rate} req/s, {args.seconds:.0f} s; server CPU ms/request")
    print("| round | " + " | ".join(_MODES) + " |")
    print("|---|" + "---:|" * len(_MODES))
    for i in range(args.rounds):
        row = [f"{_measure(m, args.rate, args.seconds):.3f}" for m in _MODES]
        print(f"| {i + 1} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
