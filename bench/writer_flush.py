"""CPU cost of the gateway's write-behind flush, per request.

Builds exactly what the gateway queues for one successful call (one
``gateway`` usage record, one ``llm.call_completed`` and one
``route.decided`` via `metis.gateway.stamping`, plus the spend-counter
deltas of a key with four capped counters) for ``--batch`` requests, and
times `metis.ledger.writer` flushing them into a fresh, migrated database
(SQLite by default, or ``--url``). Reports the CPU time (this process:
``time.process_time``) per request, median over ``--rounds`` flushes.

    .venv/bin/python bench/writer_flush.py --batch 300 --rounds 20
    .venv/bin/python bench/writer_flush.py --profile      # cProfile top 25
    valgrind --tool=callgrind .venv/bin/python bench/writer_flush.py --rounds 3

Wall-clock numbers on a shared machine are noisy; process CPU time and
callgrind instruction counts are what to compare before/after a change.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))


def _build(n: int, principal: Any, t0: datetime) -> tuple[list[Any], list[Any]]:
    from metis.gateway.app import request_id
    from metis.gateway.stamping import CallFacts, call_event, route_event, usage_record
    from metis.gateway.usage import Tokens
    from metis.pricing import price

    records, events = [], []
    for i in range(n):
        rid = request_id()
        tokens = Tokens(input=13 + i % 7, output=5, reported=True)
        priced = price("openai", "gpt-4o-mini", input_tokens=tokens.input, output_tokens=5, at=t0)
        f = CallFacts(
            request_id=rid,
            principal=principal,
            inbound_shape="openai",
            provider="openai",
            model_raw="gpt-4o-mini",
            stream=False,
            started_at=t0,
            latency_ms=1,
            http_status=200,
            status="ok",
            tokens=tokens,
            priced=priced,
            correlation_id=f"chatcmpl-{rid}",
            api_root="http://127.0.0.1:9/v1",
        )
        records.append(usage_record(f))
        events.append(call_event(f))
        events.append(
            route_event(
                request_id=rid,
                principal=principal,
                candidates=["openai:gpt-4o-mini"],
                winner_index=0,
                reason="default",
                rule=None,
                attempts=[{"target": "openai:gpt-4o-mini", "status": "ok", "http_status": 200}],
                inbound_shape="openai",
                ts=t0,
            )
        )
    return records, events


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--batch", type=int, default=300, help="requests per flush")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--url", help="database URL (default: a fresh SQLite file)")
    ap.add_argument("--profile", action="store_true", help="print a cProfile of the flushes")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="metis-flush-"))
    os.environ.setdefault("METIS_HOME", str(tmp))
    url = args.url or f"sqlite:///{tmp / 'metis.db'}"

    from metis.db.engine import make_engine
    from metis.db.migrate import upgrade
    from metis.identity.auth import Principal
    from metis.ledger.counters import Delta
    from metis.ledger.writer import WriteBehind
    from metis.workspaces import add_workspace

    eng = make_engine(url)
    upgrade(eng)
    with eng.begin() as c:
        ws = add_workspace(c, f"bench-{os.getpid()}")
    principal = Principal(
        user_id="usr_bench",
        team_id="team_bench",
        workspace_id=ws.id,
        workspace_path=ws.name,
        gateway_key_id="gk_bench",
    )
    t0 = datetime.now(UTC)
    writer = WriteBehind(eng)

    async def one_round() -> float:
        records, events = _build(args.batch, principal, t0)
        for r in records:
            writer.add(r, ())
        writer.add(None, events)
        deltas = {
            (scope, sid, t0.strftime("%Y-%m-%d")): Delta(spent=1000 * args.batch)
            for scope, sid in (
                ("key_daily", "gk_bench"),
                ("user_daily", "usr_bench"),
                ("team_daily", "team_bench"),
                ("team_monthly", "team_bench"),
            )
        }
        c0 = time.process_time()
        await _flush_with(writer, deltas)
        return time.process_time() - c0

    async def run() -> list[float]:
        await one_round()  # warm up (statement caches, imports)
        return [await one_round() for _ in range(args.rounds)]

    if args.profile:
        import cProfile
        import pstats

        # cProfile sees one thread only: run the flush's worker-thread part inline.
        async def inline(fn: Any, /, *a: Any, **kw: Any) -> Any:
            return fn(*a, **kw)

        asyncio.to_thread = inline  # type: ignore[assignment]
        asyncio.run(one_round_warm := run())  # noqa: F841 - warm imports outside the profile
        prof = cProfile.Profile()
        prof.enable()
        cpu = asyncio.run(run())
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
    else:
        cpu = asyncio.run(run())
    per = statistics.median(cpu) / args.batch * 1e6
    print(
        f"{eng.dialect.name}: batch {args.batch}, {args.rounds} flushes: "
        f"median {per:.1f} us CPU per request (min {min(cpu) / args.batch * 1e6:.1f})"
    )
    eng.dispose()


async def _flush_with(writer: Any, deltas: dict[Any, Any]) -> None:
    """Flush the writer with ``deltas`` as its counter deltas (no SpendCounters needed)."""

    class _Counters:
        def take_deltas(self) -> dict[Any, Any]:
            return deltas

        def deltas_applied(self, _d: Any) -> None:
            pass

        def restore_deltas(self, _d: Any) -> None:
            pass

    writer.counters = _Counters()
    await writer.flush()


if __name__ == "__main__":
    main()
