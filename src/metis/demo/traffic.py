"""The demo's burst of gateway traffic, sent over HTTP like any client would.

Plain httpx requests (the official SDKs are dev-only dependencies) in both
inbound shapes, streamed and not:

1. team ``platform`` works through long-context chat calls until the soft-cap
   routing rule answers its calls with a cheaper model, then a few more;
2. team ``research`` calls Claude Opus and o3 until the gateway refuses with
   429 (hard daily cap), then a couple more refusals;
3. the ``eval-pipeline`` key (no user, no team) sends embeddings and mini calls.

Prompts are long so the spend is in dollars, not micro-cents; they are
generated deterministically, so two demos see the same token counts.
"""

import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from metis.demo.seed import DemoKey
from metis.gateway.usage import Tokens, from_anthropic, from_openai

ANTHROPIC_VERSION = "2023-06-01"
COMBOS = (("openai", False), ("openai", True), ("anthropic", False), ("anthropic", True))
_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8})$")
_VOCABULARY = """request service cache retry handler token budget schema record ledger window
provider gateway invoice team user key model stream batch cursor lease sync parse render export
import route fallback latency error quota cost usage"""
_WORDS = tuple(_VOCABULARY.split())


@dataclass(frozen=True)
class Call:
    """One answered call, as the client saw it."""

    key: str
    shape: str
    stream: bool
    status: int
    model_asked: str
    model_answered: str | None
    response_id: str | None
    tokens: Tokens | None


@dataclass
class TrafficReport:
    calls: list[Call] = field(default_factory=list)

    @property
    def ok(self) -> list[Call]:
        return [c for c in self.calls if c.status == 200]

    @property
    def capped(self) -> list[Call]:
        return [c for c in self.calls if c.status == 429]

    @property
    def rerouted(self) -> list[Call]:
        return [
            c for c in self.ok if c.model_answered and family(c.model_answered) != c.model_asked
        ]

    @property
    def errors(self) -> list[Call]:
        return [c for c in self.calls if c.status not in (200, 429)]

    def combos(self) -> Counter[tuple[str, bool]]:
        return Counter((c.shape, c.stream) for c in self.ok)


def family(model: str) -> str:
    """``gpt-4o-mini-2024-07-18`` -> ``gpt-4o-mini``: the alias a client asked for."""
    return _SNAPSHOT.sub("", model)


def context_text(tokens: int, seed: int) -> str:
    """About ``tokens`` tokens (4 characters each) of code-like context."""
    rnd = random.Random(seed)  # noqa: S311 - synthetic text
    lines: list[str] = []
    size = 0
    while size < tokens * 4:
        a, b, c = rnd.choice(_WORDS), rnd.choice(_WORDS), rnd.choice(_WORDS)
        line = f"def {a}_{b}_{rnd.randrange(1000)}(x): return {c}.apply(x, n={rnd.randrange(99)})"
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines)


class Client:
    """Sends chat/messages/embeddings calls to the gateway with a key's secret."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self._contexts: dict[tuple[int, int], str] = {}

    def context(self, tokens: int, seed: int) -> str:
        got = self._contexts.get((tokens, seed))
        if got is None:
            got = self._contexts[(tokens, seed)] = context_text(tokens, seed)
        return got

    def chat(
        self,
        key: DemoKey,
        *,
        shape: str,
        stream: bool,
        model: str,
        question: str,
        context: str = "",
        cache: bool = False,
    ) -> Call:
        if shape == "openai":
            return self._openai(key, stream, model, question, context)
        return self._anthropic(key, stream, model, question, context, cache)

    def _openai(self, key: DemoKey, stream: bool, model: str, question: str, ctx: str) -> Call:
        messages: list[dict[str, str]] = []
        if ctx:
            messages.append({"role": "system", "content": "Answer from this code:\n" + ctx})
        messages.append({"role": "user", "content": question})
        body: dict[str, Any] = {"model": model, "messages": messages}
        headers = {"authorization": f"Bearer {key.secret}"}
        if not stream:
            r = self.http.post("/v1/chat/completions", json=body, headers=headers)
            data = r.json() if r.status_code == 200 else {}
            return Call(
                key.name,
                "openai",
                False,
                r.status_code,
                model,
                data.get("model"),
                data.get("id"),
                from_openai(data.get("usage")) if data else None,
            )
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        rid = answered = None
        tokens: Tokens | None = None
        with self.http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
            if r.status_code != 200:
                r.read()
                return Call(key.name, "openai", True, r.status_code, model, None, None, None)
            for line in r.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                rid = rid or chunk.get("id")
                answered = answered or chunk.get("model")
                if chunk.get("usage"):
                    tokens = from_openai(chunk["usage"])
        return Call(key.name, "openai", True, 200, model, answered, rid, tokens)

    def _anthropic(
        self, key: DemoKey, stream: bool, model: str, question: str, ctx: str, cache: bool
    ) -> Call:
        body: dict[str, Any] = {
            "model": model,
            "max_tokens": 1024,
            "messages": [{"role": "user", "content": question}],
        }
        if ctx:
            block: dict[str, Any] = {"type": "text", "text": "Answer from this code:\n" + ctx}
            if cache:
                block["cache_control"] = {"type": "ephemeral"}
            body["system"] = [block]
        headers = {"x-api-key": key.secret, "anthropic-version": ANTHROPIC_VERSION}
        if not stream:
            r = self.http.post("/v1/messages", json=body, headers=headers)
            data = r.json() if r.status_code == 200 else {}
            return Call(
                key.name,
                "anthropic",
                False,
                r.status_code,
                model,
                data.get("model"),
                data.get("id"),
                from_anthropic(data.get("usage")) if data else None,
            )
        body["stream"] = True
        rid = answered = None
        tokens = Tokens()
        with self.http.stream("POST", "/v1/messages", json=body, headers=headers) as r:
            if r.status_code != 200:
                r.read()
                return Call(key.name, "anthropic", True, r.status_code, model, None, None, None)
            for line in r.iter_lines():
                if not line.startswith("data: "):
                    continue
                ev = json.loads(line[6:])
                if ev.get("type") == "message_start":
                    msg = ev.get("message", {})
                    rid, answered = msg.get("id"), msg.get("model")
                    from_anthropic(msg.get("usage"), tokens)
                elif ev.get("type") == "message_delta":
                    from_anthropic(ev.get("usage"), tokens)
        return Call(key.name, "anthropic", True, 200, model, answered, rid, tokens)

    def embeddings(self, key: DemoKey, texts: list[str]) -> Call:
        body = {"model": "text-embedding-3-small", "input": texts}
        r = self.http.post(
            "/v1/embeddings", json=body, headers={"authorization": f"Bearer {key.secret}"}
        )
        data = r.json() if r.status_code == 200 else {}
        return Call(
            key.name,
            "openai",
            False,
            r.status_code,
            "text-embedding-3-small",
            data.get("model"),
            None,
            from_openai(data.get("usage")) if data else None,
        )


QUESTIONS = (
    "Where is the retry budget computed, and is it bounded?",
    "Summarize what this module does in three bullet points.",
    "Find a function that could raise on empty input.",
    "Which handler should own the cache invalidation?",
    "Propose a test for the export path.",
    "Explain the lease handling to a new teammate.",
)


def drive(
    gateway_url: str,
    keys: dict[str, DemoKey],
    *,
    platform_extra: int = 6,
    research_refusals: int = 3,
    max_calls: int = 400,
) -> TrafficReport:
    """Send the burst (see module doc) and return what each call got."""
    report = TrafficReport()
    with httpx.Client(base_url=gateway_url, timeout=60) as http:
        client = Client(http)
        _platform(client, keys, report, platform_extra, max_calls)
        _research(client, keys, report, research_refusals, max_calls)
        _pipeline(client, keys, report)
    return report


def _platform(
    client: Client, keys: dict[str, DemoKey], report: TrafficReport, extra: int, max_calls: int
) -> None:
    """Long-context work until ``extra`` calls were answered by the soft-cap model."""
    users = [keys["alice-laptop"], keys["bob-ide"], keys["carol-ci"]]
    for i in range(max_calls):
        shape, stream = COMBOS[i % len(COMBOS)]
        key = users[i % len(users)]
        model = ("gpt-4o", "gpt-4.1")[i // 4 % 2] if shape == "openai" else "claude-sonnet-4-5"
        ctx = client.context(12_000 + 4_000 * (i % 5), seed=i % 5)
        call = client.chat(
            key,
            shape=shape,
            stream=stream,
            model=model,
            question=QUESTIONS[i % len(QUESTIONS)],
            context=ctx,
            cache=key.name == "carol-ci",  # carol's CI reuses one cached context
        )
        report.calls.append(call)
        if call.status != 200 or len(report.rerouted) >= extra:
            break


def _research(
    client: Client, keys: dict[str, DemoKey], report: TrafficReport, refusals: int, max_calls: int
) -> None:
    """Opus and o3 calls until the team's hard daily cap refused ``refusals`` calls."""
    users = [keys["dan-notebook"], keys["erin-agent"]]
    start = len(report.capped)
    for i in range(max_calls):
        shape, stream = COMBOS[(i + 2) % len(COMBOS)]
        model = "o3" if shape == "openai" else "claude-opus-4-1"
        call = client.chat(
            users[i % 2],
            shape=shape,
            stream=stream,
            model=model,
            question=QUESTIONS[i % len(QUESTIONS)],
            context=client.context(8_000, seed=100 + i % 3),
        )
        report.calls.append(call)
        if call.status not in (200, 429) or len(report.capped) - start >= refusals:
            break


def _pipeline(client: Client, keys: dict[str, DemoKey], report: TrafficReport) -> None:
    """A key without user or team: embeddings and a few mini calls."""
    key = keys["eval-pipeline"]
    for i in range(4):
        report.calls.append(client.embeddings(key, [QUESTIONS[j] for j in range(i + 2)]))
        report.calls.append(
            client.chat(
                key,
                shape="openai",
                stream=bool(i % 2),
                model="gpt-4o-mini",
                question=QUESTIONS[i],
                context=client.context(1_500, seed=200),
            )
        )
