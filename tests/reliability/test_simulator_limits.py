"""The simulator refuses requests the providers refuse, before doing the work they bound.

Issue 19 item 9: "The simulator grew to 22 GB and was killed by the kernel on
one embeddings call with a million inputs." Here ``metis simulator serve``
runs as its own process, so its memory is measured from ``/proc`` (peak
resident set, ``VmHWM``), and the million-input call must be refused with
OpenAI's 400 without the process growing by more than a small multiple of the
request body. The providers' limits (docs/simulator.md, Limits) are checked
at their edges, in each provider's error envelope.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from metis.simulator import limits
from metis.simulator.keys import new_anthropic_key, new_openai_key
from metis.util.server_thread import free_port

MB = 1024 * 1024


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    port = free_port()
    log = tmp_path_factory.mktemp("sim") / "sim.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from metis.cli.main import run; run()",
             "simulator", "serve", "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(url + "/_sim/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "simulator did not start"
        time.sleep(0.05)
    try:
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(15)


def _mem_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _openai(url: str, path: str, content: bytes | Iterator[bytes]) -> httpx.Response:
    return httpx.post(
        url + path,
        content=content,
        headers={"Authorization": f"Bearer {new_openai_key()}", "Content-Type": "application/json"},
        timeout=120,
    )


def test_a_million_input_embeddings_call_is_a_quick_400_in_bounded_memory(
    sim: tuple[str, int],
) -> None:
    url, pid = sim
    body = json.dumps(
        {"model": "text-embedding-3-small", "input": ["hello world"] * 1_000_000}
    ).encode()
    assert len(body) < limits.MAX_BODY_BYTES  # within the byte limit: the input count refuses it
    rss_before = _mem_kb(pid, "VmRSS")
    started = time.monotonic()
    r = _openai(url, "/v1/embeddings", body)
    elapsed = time.monotonic() - started
    assert r.status_code == 400, r.text[:300]
    err = r.json()["error"]
    assert err["param"] == "input" and err["type"] == "invalid_request_error"
    assert "maximum length 2048" in err["message"]
    assert elapsed < 10, elapsed  # no per-input work (the old code never answered)
    grown_mb = (_mem_kb(pid, "VmHWM") - rss_before) / 1024
    assert grown_mb < 8 * len(body) / MB, grown_mb  # the body and its copies, not 1M objects
    # The process is fine and serves the next call.
    ok = _openai(url, "/v1/embeddings", b'{"model": "text-embedding-3-small", "input": "hi"}')
    assert ok.status_code == 200, ok.text


def test_embeddings_limits_at_their_edges(sim: tuple[str, int]) -> None:
    url, _ = sim
    model = "text-embedding-3-small"

    def call(inp: object) -> httpx.Response:
        return _openai(url, "/v1/embeddings", json.dumps({"model": model, "input": inp}).encode())

    r = call(["a"] * limits.EMBEDDINGS_MAX_INPUTS)
    assert r.status_code == 200 and len(r.json()["data"]) == limits.EMBEDDINGS_MAX_INPUTS
    assert call(["a"] * (limits.EMBEDDINGS_MAX_INPUTS + 1)).status_code == 400
    assert call([[1, 2, 3]] * (limits.EMBEDDINGS_MAX_INPUTS + 1)).status_code == 400
    assert call(list(range(5000))).status_code == 200  # one input of token ids
    too_long = call([list(range(limits.EMBEDDINGS_MAX_INPUT_TOKENS + 1))])
    assert too_long.status_code == 400 and "maximum context length" in too_long.text
    many = [list(range(200))] * (limits.EMBEDDINGS_MAX_TOTAL_TOKENS // 200 + 1)
    total = call(many[: limits.EMBEDDINGS_MAX_INPUTS])
    assert total.status_code == 400 and "max 300000 tokens" in total.text, total.text[:200]


def test_oversized_bodies_are_413_in_each_providers_shape(sim: tuple[str, int]) -> None:
    url, _ = sim
    big = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "'
    big += b"x" * (limits.MAX_BODY_BYTES + 1) + b'"}]}'
    r = _openai(url, "/v1/chat/completions", big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", '
        yield b'"content": "'
        for _ in range(limits.MAX_BODY_BYTES // MB + 1):
            yield b"x" * MB
        yield b'"}]}'

    r = httpx.post(
        url + "/v1/messages",
        content=chunks(),
        headers={"x-api-key": new_anthropic_key(), "anthropic-version": "2023-06-01"},
        timeout=120,
    )
    assert r.status_code == 413, r.text[:200]
    assert r.json() == {
        "type": "error",
        "error": {
            "type": "request_too_large",
            "message": "Request exceeds the maximum allowed number of bytes.",
        },
    }


def test_too_many_anthropic_messages_is_a_400(sim: tuple[str, int]) -> None:
    url, _ = sim
    msgs = [{"role": "user", "content": "a"}] * (limits.MESSAGES_MAX + 1)
    body = {"model": "claude-haiku-4-5", "max_tokens": 5, "messages": msgs}
    r = httpx.post(
        url + "/v1/messages",
        json=body,
        headers={"x-api-key": new_anthropic_key(), "anthropic-version": "2023-06-01"},
        timeout=60,
    )
    assert r.status_code == 400, r.text[:200]
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert "too many messages" in r.json()["error"]["message"]
