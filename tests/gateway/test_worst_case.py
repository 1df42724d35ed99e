"""The cap reservation is the request's true worst case, for every inbound shape.

Issue 19 item 1: "20 concurrent ``gpt-4o`` calls with ``max_tokens: 64, n: 128``
on a key capped at $0.05 settled $0.9249" -- the reservation counted
``max_tokens`` once. The property below generates request bodies of every
billed shape (chat, messages, responses, embeddings) with every parameter that
changes what a provider may bill (``n``, both chat budgets, ``max_output_tokens``,
no budget at all, images in messages and tool results, files, stored
references, provider-defined and server-side tools with and without
``max_uses`` / ``max_tool_calls``, predictions), lets an upstream bill the most
the request allows *by docs/gateway.md "What a reservation counts"* (worked
out here from how the body was generated, not by parsing it), in the costliest
mix of cache reads, 5-minute and 1-hour cache writes and reasoning, at the
target's tiered prices, and checks that the settled cost never exceeds the
reservation. Combined with the counters' bound (settled spend exceeds a cap by
at most one reservation per process; `test_settled_spend_stays_within_cap_plus_bound`
below runs both together on the real database) this is the cap guarantee.
10,000 examples take about 40 s on the shared 2-core test machine (30 s of CPU).
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from metis.gateway import caps
from metis.gateway.inbound import chat, embeddings, messages, responses
from metis.gateway.inbound.base import InboundAPI
from metis.gateway.model_limits import context_window, max_output_tokens
from metis.gateway.worst_case import (
    IMAGE_TOKENS,
    OVERHEAD_TOKENS,
    SERVER_TOOL_ROUNDS,
    TOOL_OVERHEAD_TOKENS,
    TYPED_TOOL_TOKENS,
    WorstCase,
)
from metis.ledger.counters import CapExceeded, SpendCounters, scopes_for
from metis.pricing import price

EXAMPLES = 10_000
PROPERTY = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)

# Priced models of both providers: flat and tiered prices, 1-hour cache writes, a
# documented maximum output, and models the table lacks (their context window stands).
MODELS = {
    "openai": ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "o3", "gpt-5", "gpt-5.4", "gpt-5.5"],
    "anthropic": [
        "claude-sonnet-4-5",
        "claude-opus-4-6",
        "claude-haiku-4-5-20251001",
        "claude-3-5-haiku-latest",
        "claude-mythos-5-2",
    ],
}
TINY_PNG = (  # a 1x1 PNG: 95 bytes of base64 that cost OpenAI 85-255 tokens
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8"
    "/5+hHgAHggJ/PchI7wAAAABJRU5ErkJggg=="
)


@dataclass
class Gen:
    """A generated request body and what the table says it may bill (before the model)."""

    api: InboundAPI
    provider: str
    body: dict[str, Any]
    budget: int | None  # output tokens per choice, None: the model's maximum
    choices: int = 1
    images: int = 0
    context: bool = False
    rounds: int = 1
    per_round: bool = False
    tools: int = 0
    typed: int = 0
    prediction: bool = False
    output: bool = True

    def limits(self, model: str, body_len: int) -> tuple[int, int]:
        """(input, output) tokens the request allows by the documented table."""
        inp = (
            body_len
            + OVERHEAD_TOKENS
            + self.tools * TOOL_OVERHEAD_TOKENS
            + self.typed * TYPED_TOOL_TOKENS
            + self.images * IMAGE_TOKENS[self.provider]
        )
        if self.context or self.rounds > 1:
            inp = max(inp, context_window(self.provider, model)) * self.rounds
        if not self.output:
            return inp, 0
        per = max_output_tokens(self.provider, model) if self.budget is None else self.budget
        out = self.choices * per * (self.rounds if self.per_round else 1)
        return inp, out + (body_len if self.prediction else 0)


BUDGETS = st.one_of(
    st.none(), st.integers(1, 200_000), st.sampled_from([0, -5, "64", 1.5, True, None])
)
TEXT = st.sampled_from(
    ["", "hi", "Write a long story.", "\u00e9\u4e2d\U0001f600", '"quoted" \\ \n\t', "y" * 2000]
)
"""Text content: only its length in the body matters to the bounds, so a few fixed texts
(empty, ASCII, multi-byte UTF-8, JSON escapes, long) instead of one draw per character
(which made character generation most of an example's time)."""


def positive(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


@st.composite
def chat_request(draw: st.DrawFn) -> Gen:
    g = Gen(chat.API, "openai", {}, None)
    msgs = []
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            msgs.append({"role": "user", "content": draw(TEXT)})
            continue
        parts: list[dict[str, Any]] = []
        for kind in draw(st.lists(st.sampled_from(["text", "image", "url", "audio", "file"]))):
            if kind == "text":
                parts.append({"type": "text", "text": draw(TEXT)})
            elif kind in ("image", "url"):
                url = TINY_PNG if kind == "image" else "https://example.com/a.png"
                parts.append({"type": "image_url", "image_url": {"url": url}})
                g.images += 1
            elif kind == "audio":
                audio = {"data": "UklGR", "format": "wav"}
                parts.append({"type": "input_audio", "input_audio": audio})
            else:
                parts.append({"type": "file", "file": {"file_id": "file-abc"}})
                g.context = True
        msgs.append({"role": "user", "content": parts})
    body: dict[str, Any] = {"messages": msgs}
    a, b = draw(BUDGETS), draw(BUDGETS)
    if a is not None:
        body["max_tokens"] = a
    if b is not None:
        body["max_completion_tokens"] = b
    budgets = [x for x in (positive(a), positive(b)) if x is not None]
    g.budget = max(budgets) if budgets else None
    n = draw(st.one_of(st.none(), st.integers(1, 128), st.sampled_from([0, -1, "3"])))
    if n is not None:
        body["n"] = n
    g.choices = positive(n) or 1
    tools = draw(st.integers(0, 3))
    if tools:
        body["tools"] = [
            {"type": "function", "function": {"name": f"f{i}", "parameters": {}}}
            for i in range(tools)
        ]
        g.tools = tools
    if draw(st.booleans()):
        body["prediction"] = {"type": "content", "content": draw(TEXT)}
        g.prediction = True
    if draw(st.integers(0, 4)) == 0:
        body["web_search_options"] = {}
        g.rounds = SERVER_TOOL_ROUNDS
    body["stream"] = draw(st.booleans())
    g.body = body
    return g


@st.composite
def messages_request(draw: st.DrawFn) -> Gen:
    g = Gen(messages.API, "anthropic", {}, None, per_round=True)

    def blocks(depth: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        kinds = ["text", "image", "document", "tool_use", "thinking"]
        if depth == 0:
            kinds.append("tool_result")
        for kind in draw(st.lists(st.sampled_from(kinds), max_size=4)):
            if kind == "text":
                out.append({"type": "text", "text": draw(TEXT)})
            elif kind == "image":
                src = {"type": "base64", "media_type": "image/png", "data": TINY_PNG[22:]}
                out.append({"type": "image", "source": src})
                g.images += 1
            elif kind == "document":
                out.append({"type": "document", "source": {"type": "file", "file_id": "file_1"}})
                g.context = True
            elif kind == "tool_use":
                out.append({"type": "tool_use", "id": "tu_1", "name": "f", "input": {}})
            elif kind == "thinking":
                out.append({"type": "thinking", "thinking": draw(TEXT), "signature": "sig"})
            else:
                inner: Any = blocks(depth + 1) if draw(st.booleans()) else draw(TEXT)
                out.append({"type": "tool_result", "tool_use_id": "tu_1", "content": inner})
        return out

    msgs = [
        {"role": "user", "content": draw(TEXT) if draw(st.booleans()) else blocks(0)}
        for _ in range(draw(st.integers(1, 3)))
    ]
    body: dict[str, Any] = {"messages": msgs}
    if draw(st.booleans()):
        body["system"] = [{"type": "text", "text": draw(TEXT)}]
    mt = draw(st.one_of(st.integers(1, 200_000), st.none()))
    if mt is not None:
        body["max_tokens"] = mt
    g.budget = mt
    n_custom = draw(st.integers(0, 2))
    tools: list[dict[str, Any]] = [
        {"name": f"t{i}", "input_schema": {"type": "object"}} for i in range(n_custom)
    ]
    if draw(st.booleans()):
        tools.append({"type": "bash_20250124", "name": "bash"})
        g.typed += 1
    server = draw(st.lists(st.one_of(st.none(), st.integers(1, 12)), max_size=2))
    for uses in server:
        t: dict[str, Any] = {"type": "web_search_20250305", "name": "web_search"}
        if uses is not None:
            t["max_uses"] = uses
        tools.append(t)
    if tools:
        body["tools"] = tools
    g.tools = len(tools)
    mcp = draw(st.integers(0, 5)) == 0
    if mcp:
        body["mcp_servers"] = [{"type": "url", "url": "https://mcp.example", "name": "m"}]
    if server or mcp:
        uses_all = [u for u in server if u is not None]
        if not mcp and len(uses_all) == len(server):
            g.rounds = min(SERVER_TOOL_ROUNDS, sum(uses_all) + 1)
        else:
            g.rounds = SERVER_TOOL_ROUNDS
    if draw(st.integers(0, 5)) == 0:
        body["container"] = "container_1"
        g.context = True
    if draw(st.booleans()):
        body["thinking"] = {"type": "enabled", "budget_tokens": 1024}
    body["stream"] = draw(st.booleans())
    g.body = body
    return g


@st.composite
def responses_request(draw: st.DrawFn) -> Gen:
    g = Gen(responses.API, "openai", {}, None)

    def parts() -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for kind in draw(st.lists(st.sampled_from(["text", "image", "file"]), max_size=3)):
            if kind == "text":
                out.append({"type": "input_text", "text": draw(TEXT)})
            elif kind == "image":
                out.append({"type": "input_image", "image_url": TINY_PNG})
                g.images += 1
            else:
                out.append({"type": "input_file", "file_id": "file-1"})
                g.context = True
        return out

    body: dict[str, Any] = {}
    if draw(st.booleans()):
        body["input"] = draw(TEXT)
    else:
        items: list[dict[str, Any]] = []
        for kind in draw(
            st.lists(
                st.sampled_from(["msg", "easy", "call", "output", "reasoning", "ref", "screen"]),
                max_size=5,
            )
        ):
            if kind == "msg":
                items.append({"type": "message", "role": "user", "content": parts()})
            elif kind == "easy":
                items.append({"role": "user", "content": draw(TEXT)})
            elif kind == "call":
                items.append(
                    {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}
                )
            elif kind == "output":
                out: Any = parts() if draw(st.booleans()) else draw(TEXT)
                items.append({"type": "function_call_output", "call_id": "c", "output": out})
            elif kind == "reasoning":
                items.append({"type": "reasoning", "summary": [], "encrypted_content": "gAAA"})
            elif kind == "ref":
                items.append({"type": "item_reference", "id": "msg_1"})
                g.context = True
            else:
                items.append(
                    {
                        "type": "computer_call_output",
                        "call_id": "c",
                        "output": {"type": "computer_screenshot", "image_url": TINY_PNG},
                    }
                )
                g.images += 1
        body["input"] = items
    if draw(st.integers(0, 4)) == 0:
        body["previous_response_id"] = "resp_1"
        g.context = True
    mo = draw(st.one_of(st.none(), st.integers(16, 200_000)))
    if mo is not None:
        body["max_output_tokens"] = mo
    g.budget = mo
    tools: list[dict[str, Any]] = []
    kinds = st.sampled_from(["function", "namespace", "web", "file"])
    for kind in draw(st.lists(kinds, max_size=3)):
        if kind == "function":
            tools.append({"type": "function", "name": "f", "parameters": {}})
            g.tools += 1
        elif kind == "namespace":
            tools.append(
                {
                    "type": "namespace",
                    "name": "ns",
                    "tools": [{"type": "function", "name": "g", "parameters": {}}],
                }
            )
            g.tools += 2
        else:
            tools.append({"type": "web_search"} if kind == "web" else {"type": "file_search"})
            g.tools += 1
            g.rounds = 0  # set below
    if tools:
        body["tools"] = tools
    calls = draw(st.one_of(st.none(), st.integers(1, 20)))
    if calls is not None:
        body["max_tool_calls"] = calls
    if g.rounds == 0:
        g.rounds = calls + 1 if calls is not None else SERVER_TOOL_ROUNDS
    body["stream"] = draw(st.booleans())
    g.body = body
    return g


@st.composite
def embeddings_request(draw: st.DrawFn) -> Gen:
    inp: Any = draw(
        st.one_of(TEXT, st.lists(TEXT, max_size=4), st.lists(st.lists(st.integers(0, 99_999))))
    )
    return Gen(embeddings.API, "openai", {"input": inp}, None, output=False)


REQUESTS = st.one_of(chat_request(), messages_request(), responses_request(), embeddings_request())


_ALL = 1000
SHARE = st.one_of(st.just(_ALL), st.integers(0, _ALL))
"""A share (in thousandths) of a limit, leaning to all of it; built once (strategies built
per draw cost more than the rest of an example)."""
SOME = st.one_of(st.just(0), st.integers(0, _ALL))


@st.composite
def billed_usage(draw: st.DrawFn, in_max: int, out_max: int) -> dict[str, int]:
    """The usage an upstream bills within the limits, leaning to the costliest mixes."""

    def upto(n: int, share: st.SearchStrategy[int] = SHARE) -> int:
        return n * draw(share) // _ALL

    i, o = upto(in_max), upto(out_max)
    cached = upto(i, SOME)
    created = upto(i - cached)
    return {
        "input_tokens": i,
        "output_tokens": o,
        "cached_input_tokens": cached,
        "cache_creation_input_tokens": created,
        "cache_write_1h_tokens": upto(created),
        "reasoning_tokens": upto(o),
    }


def reservation(g: Gen, model: str) -> tuple[int, bytes]:
    raw = msgspec.json.encode({"model": model, **g.body})
    req = g.api.decoder.decode(raw)
    est = caps.estimate(g.provider, model, len(raw), g.api.worst_case(req, raw))
    assert est is not None
    return est, raw


@PROPERTY
@given(st.data())
def test_settled_cost_never_exceeds_the_reservation(data: st.DataObject) -> None:
    g = data.draw(REQUESTS)
    model = data.draw(st.sampled_from(MODELS[g.provider]))
    est, raw = reservation(g, model)
    in_max, out_max = g.limits(model, len(raw))
    usage = data.draw(billed_usage(in_max, out_max))
    cost = price(g.provider, model, **usage).cost_nanousd
    assert cost is not None
    assert cost <= est, (cost, est, usage)


# -- the issue's inputs and each shape's reading ---------------------------------------


def _wc(api: InboundAPI, body: dict[str, Any]) -> WorstCase:
    raw = msgspec.json.encode(body)
    return api.worst_case(api.decoder.decode(raw), raw)


def test_n_and_max_tokens_multiply() -> None:
    """The issue's request: n 128 x max_tokens 64 is 8,192 output tokens, not 64."""
    body = {
        "model": "gpt-4o",
        "n": 128,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Write a long story."}],
    }
    raw = msgspec.json.encode(body)
    wc = _wc(chat.API, body)
    assert (wc.choices, wc.output_budget) == (128, 64)
    est = caps.estimate("openai", "gpt-4o", len(raw), wc)
    # 8,192 output tokens at gpt-4o's $10/MTok is 81,920,000 nano-USD on its own
    assert est is not None and est >= 81_920_000
    # the issue saw 4,462 completion tokens from one call on a $0.02 cap: within it
    issue_call = price("openai", "gpt-4o", input_tokens=20, output_tokens=4_462).cost_nanousd
    assert issue_call is not None and issue_call <= est


def test_codex_request_without_budget_reserves_the_models_maximum() -> None:
    """Codex sends no max_output_tokens: the model's 128,000 (gpt-5), not 4,096."""
    body = {
        "model": "gpt-5",
        "stream": True,
        "store": False,
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
        ],
        "tools": [
            {"type": "function", "name": "exec_command", "parameters": {}},
            {"type": "namespace", "name": "multi_agent_v1", "tools": []},
        ],
        "reasoning": {"effort": "high", "summary": "auto"},
    }
    wc = _wc(responses.API, body)
    assert wc.output_budget is None and wc.rounds == 1 and not wc.context_bound
    assert max_output_tokens("openai", "gpt-5") == 128_000
    # with its web_search tool the model may search and read again, up to 10 rounds
    body["tools"].append({"type": "web_search", "external_web_access": False})  # type: ignore[attr-defined]
    assert _wc(responses.API, body).rounds == SERVER_TOOL_ROUNDS
    body["max_tool_calls"] = 2
    assert _wc(responses.API, body).rounds == 3


def test_unknown_or_undecodable_parts_are_reserved_conservatively() -> None:
    odd = {"model": "gpt-4o", "messages": [{"role": "user", "content": [{"type": "hologram"}]}]}
    assert _wc(chat.API, odd).context_bound
    not_a_list = {"model": "gpt-4o", "messages": {"role": "user"}}
    assert _wc(chat.API, not_a_list).context_bound
    # an escaped key is read as the upstream reads it
    raw = b'{"model":"gpt-4o","\\u006e":64,"messages":[]}'
    assert chat.API.worst_case(chat.API.decoder.decode(raw), raw).choices == 64
    # duplicate keys: the last one counts, as in the providers' parsers
    raw = b'{"model":"gpt-4o","max_tokens":1,"messages":[],"max_tokens":9000}'
    assert chat.API.worst_case(chat.API.decoder.decode(raw), raw).output_budget == 9000


def test_anthropic_images_in_tool_results_and_server_tool_rounds() -> None:
    img = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "x"}}
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1000,
        "messages": [
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t", "content": [img, img]}],
            }
        ],
        "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}],
    }
    wc = _wc(messages.API, body)
    assert (wc.images, wc.rounds, wc.budget_per_round) == (2, 4, True)


def test_embeddings_have_no_output() -> None:
    wc = _wc(embeddings.API, {"model": "text-embedding-3-small", "input": ["a", "b"]})
    assert not wc.output and not wc.context_bound


# -- with the counters, on the real database -----------------------------------------

_ids = itertools.count()


@settings(
    max_examples=60,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    requests=st.lists(st.tuples(REQUESTS, st.data()), min_size=1, max_size=25),
    cap_usd_cents=st.integers(1, 500),
    processes=st.integers(1, 2),
)
def test_settled_spend_stays_within_cap_plus_bound(
    engine: Engine, requests: list[tuple[Gen, Any]], cap_usd_cents: int, processes: int
) -> None:
    """Concurrent generated requests through real `SpendCounters` (leases granted in the
    test database), each settled at the worst usage it allows: the settled spend
    never exceeds the cap by more than one reservation per process."""
    cap = cap_usd_cents * 10_000_000
    key = f"key_wc_{next(_ids)}"
    scopes = scopes_for(
        key_id=key,
        user_id=None,
        team_id=None,
        key_daily_cap=cap,
        user_daily_cap=None,
        team_daily_cap=None,
        team_monthly_cap=None,
        now=__import__("metis.timeutil", fromlist=["utcnow"]).utcnow(),
    )
    calls = []
    for g, data in requests:
        model = data.draw(st.sampled_from(MODELS[g.provider]))
        est, raw = reservation(g, model)
        in_max, out_max = g.limits(model, len(raw))
        usage = data.draw(billed_usage(in_max, out_max))
        cost = price(g.provider, model, **usage).cost_nanousd
        assert cost is not None
        calls.append((est, cost))
    procs = [SpendCounters(engine) for _ in range(processes)]

    async def one(i: int, est: int, cost: int) -> int:
        c = procs[i % processes]
        try:
            r = await c.reserve(scopes, est)
        except CapExceeded:
            return 0
        await asyncio.sleep(0)
        c.settle(r, cost)
        return cost

    async def run() -> int:
        return sum(await asyncio.gather(*(one(i, e, c) for i, (e, c) in enumerate(calls))))

    spent = asyncio.run(run())
    largest = max(e for e, _ in calls)
    assert spent <= cap + processes * largest


pytestmark = pytest.mark.filterwarnings("error")
