"""Alice's agent: calls the provider directly and pushes its usage like a plugin does.

The agent has its own provider keys (not stored in Metis: traffic that
bypasses the gateway), calls the simulator over the last few days
(``x-sim-time`` back-dates a call on the simulator's side, so the provider's
reports show it on that day) and pushes one usage item per call to
``POST /v1/ingest/usage`` with the call's response id as ``correlation_id``.
It also reports one call it made *through* the gateway, as a plugin that
cannot tell would: reconciliation recognises it by its correlation id and
counts it once (docs/reconciliation.md, rule 1).
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from metis.demo.traffic import ANTHROPIC_VERSION, QUESTIONS, Call
from metis.gateway.usage import Tokens, from_anthropic, from_openai
from metis.simulator.keys import new_anthropic_key, new_openai_key

AGENT_MODELS = (("openai", "gpt-4o-mini"), ("anthropic", "claude-haiku-4-5"))


@dataclass(frozen=True)
class PushReport:
    status: int
    accepted: int
    rejected: int
    direct_calls: int
    duplicates: int


def _item(
    key: str, when: datetime, provider: str, model: str, rid: str | None, t: Tokens
) -> dict[str, Any]:
    return {
        "idempotency_key": key,
        "time": when.isoformat().replace("+00:00", "Z"),
        "provider": provider,
        "model": model,
        "input_tokens": t.input,
        "output_tokens": t.output,
        "cached_input_tokens": t.cached,
        "cache_creation_input_tokens": t.cache_creation,
        "reasoning_tokens": t.reasoning,
        "user": "alice",
        "correlation_id": rid,
        "session_id": f"hermes-{when.date().isoformat()}",
        "metadata": {"agent": "hermes"},
    }


def agent_calls(
    sim_url: str, *, days: int = 6, per_day: int = 3, now: datetime | None = None
) -> list[dict[str, Any]]:
    """Make the agent's direct calls and return their usage items."""
    now = now or datetime.now(UTC)
    keys = {"openai": new_openai_key(), "anthropic": new_anthropic_key()}
    items: list[dict[str, Any]] = []
    with httpx.Client(base_url=sim_url, timeout=30) as http:
        for back in range(days, -1, -1):
            for j in range(per_day):
                day = (now - timedelta(days=back)).date()
                if back == 0:
                    when = (now - timedelta(hours=1 + 2 * j)).replace(microsecond=0)
                    if when.date() != day:
                        continue  # before midnight today: keep today's calls today
                else:  # mid-morning of that day: inside the synced days at any time of day
                    when = datetime(day.year, day.month, day.day, (9 + 2 * j) % 24, tzinfo=UTC)
                provider, model = AGENT_MODELS[(back + j) % 2]
                question = QUESTIONS[(back * per_day + j) % len(QUESTIONS)]
                headers = {"x-sim-time": str(int(when.timestamp()))}
                if provider == "openai":
                    headers["authorization"] = f"Bearer {keys['openai']}"
                    body: dict[str, Any] = {
                        "model": model,
                        "messages": [{"role": "user", "content": question}],
                    }
                    r = http.post("/v1/chat/completions", json=body, headers=headers)
                    r.raise_for_status()
                    data = r.json()
                    tokens = from_openai(data["usage"])
                else:
                    headers["x-api-key"] = keys["anthropic"]
                    headers["anthropic-version"] = ANTHROPIC_VERSION
                    body = {
                        "model": model,
                        "max_tokens": 512,
                        "messages": [{"role": "user", "content": question}],
                    }
                    r = http.post("/v1/messages", json=body, headers=headers)
                    r.raise_for_status()
                    data = r.json()
                    tokens = from_anthropic(data["usage"])
                items.append(
                    _item(f"hermes:{data['id']}", when, provider, data["model"], data["id"], tokens)
                )
    return items


def duplicate_items(calls: list[Call], now: datetime | None = None) -> list[dict[str, Any]]:
    """Items for alice's non-streamed gateway calls, as her plugin also saw them."""
    now = now or datetime.now(UTC)
    out: list[dict[str, Any]] = []
    for c in calls:
        if c.key == "alice-laptop" and c.status == 200 and not c.stream and c.tokens:
            provider = c.shape
            model = c.model_answered or c.model_asked
            out.append(
                _item(f"hermes:{c.response_id}", now, provider, model, c.response_id, c.tokens)
            )
    return out[:2]


def push(server_url: str, token: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    """``POST /v1/ingest/usage`` with the ingest token; the parsed answer."""
    r = httpx.post(
        f"{server_url}/v1/ingest/usage",
        json={"items": items},
        headers={"authorization": f"Bearer {token}"},
        timeout=30,
    )
    body: dict[str, Any] = r.json()
    body["status"] = r.status_code
    return body


def run(
    server_url: str, sim_url: str, token: str, gateway_calls: list[Call], *, days: int = 6
) -> PushReport:
    """The agent's direct calls over ``days`` past days and today, plus two duplicates
    of gateway calls, pushed in one batch."""
    direct = agent_calls(sim_url, days=days)
    dups = duplicate_items(gateway_calls)
    body = push(server_url, token, direct + dups)
    return PushReport(
        status=int(body["status"]),
        accepted=len(body.get("accepted", [])),
        rejected=len(body.get("rejected", [])),
        direct_calls=len(direct),
        duplicates=len(dups),
    )
