"""Provisioning and client traffic for the fault tests (official SDKs, real HTTP).

`provision` makes workspace ``w`` with OpenAI and Anthropic ``inference``
credentials pointing at the simulator and issues gateway keys. `Traffic` runs
client threads against a gateway URL -- OpenAI and Anthropic, streaming and
not, each thread its own SDK client -- and keeps one `Outcome` per request:
the gateway's ``x-metis-request-id``, the upstream response id the client saw
and when the response was completely read (monotonic clock). The tests then
hold the ledger against these outcomes and against the simulator's own list
of calls (its ground truth).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import anthropic
import openai
from sqlalchemy import Engine, select

from metis.db.tables import usage_records

OPENAI_MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-haiku-4-5-20251001"
KINDS = ("openai", "openai_stream", "anthropic", "anthropic_stream")


def provision(engine: Engine, upstream_url: str, workspace: str = "w") -> str:
    """Workspace with both inference credentials at ``upstream_url``; returns its id."""
    from metis.config import get_settings
    from metis.credentials import add_credential
    from metis.workspaces import add_workspace

    settings = get_settings()
    with engine.begin() as conn:
        ws = add_workspace(conn, workspace)
        for provider, secret in (
            ("openai", "sk-test-reliability-openai-0001"),
            ("anthropic", "sk-ant-test-reliability-0001"),
        ):
            add_credential(
                conn,
                settings,
                workspace_id=ws.id,
                provider=provider,
                purposes=["inference"],
                mode="standard",
                secret=secret,
                base_url=upstream_url,
            )
    return ws.id


def issue(
    engine: Engine, name: str, *, daily_cap_usd: str | None = None, workspace: str = "w"
) -> tuple[str, str]:
    """Issue a gateway key (own user); returns (key_id, secret)."""
    from metis.identity.keys import issue_key
    from metis.money import to_nanousd

    with engine.begin() as conn:
        key, secret = issue_key(
            conn,
            name=name,
            workspace=workspace,
            user=f"{name}-user",
            team=None,
            allowed_models=None,
            daily_cap_nanousd=None if daily_cap_usd is None else to_nanousd(Decimal(daily_cap_usd)),
            create_user=True,
            create_team=True,
        )
    return key.id, secret


@dataclass
class Outcome:
    kind: str
    status: int  # HTTP status; 0 = no complete answer (connection refused/reset mid-stream)
    request_id: str | None = None  # x-metis-request-id
    upstream_id: str | None = None  # chatcmpl-… / msg_… as the client saw it
    t_done: float = 0.0  # time.monotonic() when the response was completely read
    error: str | None = None


def one_call(oc: openai.OpenAI, ac: anthropic.Anthropic, kind: str, n: int) -> Outcome:
    """Make one request of ``kind``; never raises (failures become an Outcome)."""
    msg = f"reliability request {n}: " + "word " * (n % 23)
    try:
        if kind.startswith("openai"):
            stream = kind.endswith("stream")
            raw: Any = oc.chat.completions.with_raw_response.create(
                model=OPENAI_MODEL,
                messages=[{"role": "user", "content": msg}],
                max_tokens=64,
                stream=stream,
            )
            rid = raw.headers.get("x-metis-request-id")
            if stream:
                uid = None
                for chunk in raw.parse():
                    uid = uid or chunk.id
            else:
                uid = raw.parse().id
        else:
            stream = kind.endswith("stream")
            raw = ac.messages.with_raw_response.create(
                model=ANTHROPIC_MODEL,
                max_tokens=64,
                messages=[{"role": "user", "content": msg}],
                stream=stream,
            )
            rid = raw.headers.get("x-metis-request-id")
            if stream:
                uid = None
                for ev in raw.parse():
                    if ev.type == "message_start":
                        uid = ev.message.id
            else:
                uid = raw.parse().id
        return Outcome(kind, raw.status_code, rid, uid, time.monotonic())
    except (openai.APIStatusError, anthropic.APIStatusError) as e:
        return Outcome(
            kind, e.status_code, e.response.headers.get("x-metis-request-id"), error=str(e)[:300]
        )
    except Exception as e:  # SDK errors, and transport errors a stream raises as they are
        # (e.g. RemoteProtocolError when the server dies mid-stream)
        return Outcome(kind, 0, error=type(e).__name__)


@dataclass
class Traffic:
    """``threads`` client loops against ``url`` until `stop` (or ``limit`` requests each)."""

    url: str
    secret: str
    threads: int = 4
    limit: int | None = None
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _loop(self, idx: int) -> None:
        oc = openai.OpenAI(
            api_key=self.secret, base_url=self.url + "/v1", max_retries=0, timeout=20
        )
        ac = anthropic.Anthropic(api_key=self.secret, base_url=self.url, max_retries=0, timeout=20)
        try:
            n = 0
            while not self._stop.is_set() and (self.limit is None or n < self.limit):
                o = one_call(oc, ac, KINDS[(idx + n) % len(KINDS)], idx * 100_000 + n)
                with self._lock:
                    self.outcomes.append(o)
                n += 1
                if o.status == 0:
                    time.sleep(0.05)  # the server is gone: do not spin
        finally:
            oc.close()
            ac.close()

    def start(self) -> Traffic:
        for i in range(self.threads):
            t = threading.Thread(target=self._loop, args=(i,), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def answered(self) -> int:
        with self._lock:
            return sum(1 for o in self.outcomes if o.status == 200)

    def wait_answered(self, n: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.answered() < n:
            assert time.monotonic() < deadline, f"only {self.answered()} answers in {timeout}s"
            time.sleep(0.02)

    def stop(self, timeout: float = 30.0) -> list[Outcome]:
        self._stop.set()
        for t in self._threads:
            t.join(timeout)
        return list(self.outcomes)

    def join(self, timeout: float = 60.0) -> list[Outcome]:
        for t in self._threads:
            t.join(timeout)
        return list(self.outcomes)


def gateway_rows(engine: Engine) -> list[dict[str, Any]]:
    """Every ``gateway`` usage record, as dicts."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(usage_records).where(usage_records.c.source == "gateway")
        ).mappings()
        return [dict(r) for r in rows]


def by(rows: list[dict[str, Any]], key: str) -> dict[Any, dict[str, Any]]:
    return {r[key]: r for r in rows}


TOKEN_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_creation_input_tokens",
    "cost_nanousd",
)


def mismatches(
    rows: list[dict[str, Any]], sim_calls: list[dict[str, Any]]
) -> Iterator[tuple[str, str, Any, Any]]:
    """(upstream id, field, ledger, simulator) for every record that differs from its call."""
    calls = by(sim_calls, "response_id")
    for r in rows:
        c = calls.get(r["correlation_id"])
        if c is None:
            yield (str(r["correlation_id"]), "missing_in_simulator", r["dedupe_key"], None)
            continue
        for f in TOKEN_FIELDS:
            if int(r[f]) != int(c[f]):
                yield (str(r["correlation_id"]), f, r[f], c[f])
