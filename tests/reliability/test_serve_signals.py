"""SIGTERM and SIGKILL of a real ``metis serve`` under load, then restart.

Traffic: four SDK client threads (OpenAI and Anthropic, streaming and not)
through the gateway to the provider simulator, with a daily cap active on the
key. The simulator's own call list is the ground truth: every upstream call
it billed, with its exact tokens and cost.

- SIGTERM (graceful): every request answered 200 has its record, exactly once,
  with the simulator's tokens and cost; nothing is lost.
- SIGKILL: the only answered calls without a record completed within the
  write-behind window before the kill (docs/gateway.md "Write-behind");
  nothing is recorded twice; the spend counter equals the recorded cost
  (counter deltas commit in the same transaction as the records); after a
  restart the same key works and is recorded.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine

from metis.ledger.counters import read_counter
from metis.timeutil import day_key, utcnow
from tests.plugins.simulator import Simulator
from tests.reliability.serve import GRACEFUL_EXIT, ServeProcess
from tests.reliability.traffic import Outcome, Traffic, gateway_rows, issue, mismatches, provision

pytestmark = pytest.mark.slow

WINDOW_S = 3.0
"""How far before the kill a lost call may have completed: a flush every 0.2 s
plus the flush itself, normally < 0.5 s in all; on a heavily loaded 2-core
machine flushes were seen to take over 1 s, hence the headroom. The exact
property is the next one."""
SKEW_S = 0.5
"""Lost calls are the newest: each completed after every recorded call, give
or take this much scheduling delay of the client threads' clocks (a flush
takes the whole buffer, so an older call cannot miss a flush a newer one made)."""


def _check_exact(engine: Engine, sim: Simulator, key_id: str) -> list[dict[str, object]]:
    """Records match the simulator call for call; no duplicates; counter == records."""
    rows = gateway_rows(engine)
    assert len({r["correlation_id"] for r in rows}) == len(rows), "an upstream call recorded twice"
    assert list(mismatches(rows, sim.calls())) == []
    with engine.connect() as conn:
        spent, _reserved = read_counter(conn, ("key_daily", key_id, day_key(utcnow())))
    assert spent == sum(int(r["cost_nanousd"]) for r in rows if r["gateway_key_id"] == key_id)
    return rows


def _answered(outcomes: list[Outcome]) -> list[Outcome]:
    ok = [o for o in outcomes if o.status == 200]
    bad = [o for o in outcomes if o.status not in (0, 200)]
    assert not bad, f"non-200 answers from the gateway: {bad[:3]}"
    return ok


def test_sigterm_under_load_loses_nothing(
    metis_env: dict[str, str], engine: Engine, simulator: Simulator, tmp_path: Path
) -> None:
    provision(engine, simulator.url)
    key_id, secret = issue(engine, "term", daily_cap_usd="100")
    srv = ServeProcess(tmp_path).start()
    try:
        load = Traffic(srv.url, secret, threads=4).start()
        load.wait_answered(40)
        code = srv.term()
        outcomes = load.stop()
    finally:
        srv.kill()
    assert code in GRACEFUL_EXIT, srv.log()
    ok = _answered(outcomes)
    rows = _check_exact(engine, simulator, key_id)
    recorded = {r["dedupe_key"] for r in rows}
    missing = [o for o in ok if o.request_id not in recorded]
    assert not missing, f"{len(missing)} of {len(ok)} answered requests have no record"
    # and every call the simulator billed was answered and recorded (in-flight calls finished)
    assert {r["correlation_id"] for r in rows} == {c["response_id"] for c in simulator.calls()}
    assert "Traceback" not in srv.log()


def test_sigkill_under_load_loses_at_most_the_window(
    metis_env: dict[str, str], engine: Engine, simulator: Simulator, tmp_path: Path
) -> None:
    provision(engine, simulator.url)
    key_id, secret = issue(engine, "kill", daily_cap_usd="100")
    srv = ServeProcess(tmp_path).start()
    try:
        load = Traffic(srv.url, secret, threads=4).start()
        # Run well past the window, with flushes committed, before the kill: then
        # the early answers must be in the database and the late ones may not.
        t0 = time.monotonic()
        load.wait_answered(60)
        while time.monotonic() - t0 < WINDOW_S + 1 or not gateway_rows(engine):
            assert time.monotonic() - t0 < 30, srv.log()
            time.sleep(0.1)
        t_kill = time.monotonic()
        srv.kill()
        assert srv.proc is not None and srv.proc.returncode == -signal.SIGKILL
        outcomes = load.stop()
    finally:
        srv.kill()
    ok = _answered(outcomes)
    rows = _check_exact(engine, simulator, key_id)
    recorded = {r["dedupe_key"] for r in rows}
    lost = [o for o in ok if o.request_id not in recorded]
    kept = [o for o in ok if o.request_id in recorded]
    late = [round(t_kill - o.t_done, 3) for o in lost if o.t_done < t_kill - WINDOW_S]
    assert not late, f"records lost that completed this many seconds before the kill: {late}"
    if lost:  # only the unflushed tail
        newest_kept = max(o.t_done for o in kept)
        older = [round(newest_kept - o.t_done, 3) for o in lost if o.t_done < newest_kept - SKEW_S]
        assert not older, f"lost calls older than recorded ones by (s): {older}"
    assert len(lost) < len(ok) / 2, (len(lost), len(ok))

    # Restart on the same database: the key still works, within its cap, and is recorded.
    srv2 = ServeProcess(tmp_path).start()
    try:
        again = Traffic(srv2.url, secret, threads=2, limit=4).start().join()
        assert srv2.term() in GRACEFUL_EXIT, srv2.log()
    finally:
        srv2.kill()
    ok2 = _answered(again)
    assert len(ok2) == 8
    rows2 = _check_exact(engine, simulator, key_id)
    assert {o.request_id for o in ok2} <= {r["dedupe_key"] for r in rows2}
    assert len(rows2) == len(rows) + 8
