"""Deterministic past usage for ``--history-days D``.

For each of the D UTC days before today, a few history keys per provider make
calls to a few models at fixed times of day. Everything is drawn from a PRNG
seeded with (seed, calendar date), so a given date always has the same history
for a given seed, whenever the simulator starts (a backfill over the same
dates finds the same numbers after a restart). Entries aggregate several
requests (``requests`` > 1) to keep the ledger small; they appear in the admin
reports and ground truth like served calls (``origin: "history"``).

History keys (usable for inference too): OpenAI ``sk-proj-sim-history-<seed>-<i>``,
Anthropic ``sk-ant-api03-sim-history-<seed>-<i>``, i = 0, 1, 2 (see `history_keys`).
"""

import random
from datetime import UTC, datetime, timedelta

from metis.simulator.keys import anthropic_identity, openai_identity
from metis.simulator.ledger import Call

OPENAI_CHAT = ("gpt-4o-mini-2024-07-18", "gpt-4.1-mini-2025-04-14", "o4-mini-2025-04-16")
OPENAI_EMBED = ("text-embedding-3-small",)
ANTHROPIC = ("claude-haiku-4-5-20251001", "claude-sonnet-4-5-20250929")
KEYS_PER_PROVIDER = 3


def history_keys(seed: int) -> dict[str, list[str]]:
    """The inference keys whose usage the history contains."""
    return {
        "openai": [f"sk-proj-sim-history-{seed}-{i}" for i in range(KEYS_PER_PROVIDER)],
        "anthropic": [f"sk-ant-api03-sim-history-{seed}-{i}" for i in range(KEYS_PER_PROVIDER)],
    }


def generate(seed: int, days: int, now: float) -> list[Call]:
    today = datetime.fromtimestamp(now, UTC).date()
    keys = history_keys(seed)
    out: list[Call] = []
    for back in range(days, 0, -1):
        day = today - timedelta(days=back)
        rnd = random.Random(f"{seed}:{day.isoformat()}")  # noqa: S311 - synthetic data
        midnight = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
        for key in keys["openai"]:
            ident = openai_identity(key)
            for model in (*OPENAI_CHAT, *OPENAI_EMBED):
                for _ in range(rnd.randint(0, 3)):
                    n = rnd.randint(1, 20)
                    inp = n * rnd.randint(20, 3000)
                    embed = model in OPENAI_EMBED
                    cached = 0 if embed else inp * rnd.randint(0, 40) // 100 // 128 * 128
                    out_t = 0 if embed else n * rnd.randint(8, 400)
                    reasoning = out_t * rnd.randint(20, 60) // 100 if model.startswith("o") else 0
                    out.append(
                        Call(
                            provider="openai",
                            kind="embeddings" if embed else "completions",
                            ts=midnight + rnd.randrange(86400),
                            api_key_id=ident.api_key_id,
                            model=model,
                            input_tokens=inp,
                            cached_input_tokens=cached,
                            output_tokens=out_t,
                            reasoning_tokens=reasoning,
                            requests=n,
                            project_id=ident.project_id,
                            user_id=ident.user_id,
                            origin="history",
                        )
                    )
        for key in keys["anthropic"]:
            ident = anthropic_identity(key)
            for model in ANTHROPIC:
                for _ in range(rnd.randint(0, 3)):
                    n = rnd.randint(1, 20)
                    inp = n * rnd.randint(20, 3000)
                    read = inp * rnd.randint(0, 50) // 100
                    w5 = (inp - read) * rnd.randint(0, 20) // 100
                    w1 = (inp - read - w5) * rnd.randint(0, 10) // 100
                    out.append(
                        Call(
                            provider="anthropic",
                            kind="messages",
                            ts=midnight + rnd.randrange(86400),
                            api_key_id=ident.api_key_id,
                            model=model,
                            input_tokens=inp,
                            cached_input_tokens=read,
                            cache_write_5m=w5,
                            cache_write_1h=w1,
                            output_tokens=n * rnd.randint(8, 400),
                            requests=n,
                            workspace_id=ident.workspace_id,
                            service_tier="standard",
                            origin="history",
                        )
                    )
    out.sort(key=lambda c: c.ts)
    return out
