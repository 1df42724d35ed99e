"""PostgreSQL stopped under two running ``metis serve`` processes, then started again.

docs/gateway.md "When the database is unavailable" is the policy under test:

- uncapped keys keep working: calls are forwarded and answered, their records
  wait in the write-behind buffer;
- a capped key whose counter needs a lease grant gets, by default
  (``METIS_CAPS_ON_DB_ERROR=closed``), a 503 in its inbound shape naming the
  reason -- never a 500;
- with ``METIS_CAPS_ON_DB_ERROR=open`` it is admitted and its spend is counted
  once the database is back;
- a full buffer (``METIS_WRITE_BUFFER_MAX_ITEMS``) refuses new calls with 503
  and says so in the log, instead of dropping records;
- when the database returns, every answered call is written exactly once,
  with the simulator's tokens and cost, and spend counters equal the records.

The test runs its own PostgreSQL cluster (it must stop it), so it does not
depend on the suite's backend: it runs in the PostgreSQL pass of
scripts/test.sh only (in the SQLite pass it would repeat the same test), or
on SQLite with ``METIS_TEST_PG_OUTAGE=1``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from sqlalchemy import Engine

from metis.ledger.counters import GRANT_RETRY_S, read_counter
from metis.timeutil import day_key, utcnow
from tests.conftest import BACKEND
from tests.plugins.simulator import Simulator
from tests.reliability.own_postgres import OwnPostgres, own_postgres  # noqa: F401
from tests.reliability.serve import GRACEFUL_EXIT, ServeProcess
from tests.reliability.traffic import (
    ANTHROPIC_MODEL,
    KINDS,
    OPENAI_MODEL,
    Outcome,
    Traffic,
    gateway_rows,
    issue,
    mismatches,
    one_call,
    provision,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        BACKEND != "postgresql" and os.environ.get("METIS_TEST_PG_OUTAGE") != "1",
        reason="own PostgreSQL cluster: runs in the PostgreSQL pass (or METIS_TEST_PG_OUTAGE=1)",
    ),
]


def _wait(cond: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _ok(outcomes: list[Outcome]) -> set[str]:
    assert all(o.status == 200 for o in outcomes), [o for o in outcomes if o.status != 200]
    return {o.request_id for o in outcomes if o.request_id}


def _clients(url: str, secret: str) -> tuple[openai.OpenAI, anthropic.Anthropic]:
    return (
        openai.OpenAI(api_key=secret, base_url=url + "/v1", max_retries=0, timeout=20),
        anthropic.Anthropic(api_key=secret, base_url=url, max_retries=0, timeout=20),
    )


def test_postgres_down_then_back(
    metis_env: dict[str, str],
    own_postgres: tuple[OwnPostgres, Engine],  # noqa: F811
    simulator: Simulator,
    tmp_path: Path,
) -> None:
    pg, engine = own_postgres
    provision(engine, simulator.url)
    _, free = issue(engine, "free")
    capped_id, capped = issue(engine, "capped", daily_cap_usd="100")
    open_id, opened = issue(engine, "opened", daily_cap_usd="100")
    provision(engine, simulator.url, workspace="w2")  # its credentials are never read before
    _, cold = issue(engine, "cold", workspace="w2")
    env = {"METIS_DATABASE_URL": pg.url}
    closed_srv = ServeProcess(tmp_path, env).spawn()
    open_env = {**env, "METIS_CAPS_ON_DB_ERROR": "open", "METIS_WRITE_BUFFER_MAX_ITEMS": "12"}
    open_srv = ServeProcess(tmp_path, open_env).spawn()
    clients: list[Any] = []
    try:
        closed_srv.wait_ready()
        open_srv.wait_ready()
        # Warm up: each process has read both credentials (their first use needs the database).
        answered = set()
        for srv in (closed_srv, open_srv):
            answered |= _ok(Traffic(srv.url, free, threads=1, limit=4).start().join())
        _wait(lambda: len(gateway_rows(engine)) == 8, "warm-up records")

        pg.stop()
        # Uncapped key: served, records buffered.
        answered |= _ok(Traffic(closed_srv.url, free, threads=2, limit=6).start().join())
        # Capped key, fail-closed (default): a clear 503 in each inbound shape.
        oc, ac = _clients(closed_srv.url, capped)
        clients += [oc, ac]
        with pytest.raises(openai.APIStatusError) as oe:
            oc.chat.completions.create(
                model=OPENAI_MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=8
            )
        assert oe.value.status_code == 503
        err = oe.value.body
        assert isinstance(err, dict)
        assert err["type"] == "service_unavailable" and err["code"] == "database_unavailable"
        assert "METIS_CAPS_ON_DB_ERROR=closed" in err["message"]
        with pytest.raises(anthropic.APIStatusError) as ae:
            ac.messages.create(
                model=ANTHROPIC_MODEL, max_tokens=8, messages=[{"role": "user", "content": "hi"}]
            )
        assert ae.value.status_code == 503
        assert isinstance(ae.value.body, dict) and ae.value.body["type"] == "error"
        assert "database is unavailable" in ae.value.body["error"]["message"]

        # A credential's first use needs the database: 503 as well, not 500.
        oc3, ac3 = _clients(closed_srv.url, cold)
        clients += [oc3, ac3]
        with pytest.raises(openai.APIStatusError) as ce:
            oc3.chat.completions.create(
                model=OPENAI_MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=8
            )
        assert ce.value.status_code == 503
        assert "the database is unavailable; retry later" in str(ce.value)

        # Capped key, fail-open: admitted until the 12-item buffer is full, then 503.
        oc2, ac2 = _clients(open_srv.url, opened)
        clients += [oc2, ac2]
        outs = [one_call(oc2, ac2, KINDS[n % 4], n) for n in range(8)]
        codes = [o.status for o in outs]
        k = codes.index(503) if 503 in codes else len(codes)
        assert 1 <= k < 8 and codes == [200] * k + [503] * (8 - k), str(outs)
        answered |= _ok(outs[:k])
        with pytest.raises(openai.APIStatusError) as full:
            oc2.chat.completions.create(
                model=OPENAI_MODEL, messages=[{"role": "user", "content": "x"}], max_tokens=8
            )
        assert "usage buffer full" in str(full.value)
        _wait(lambda: "write-behind buffer full" in open_srv.log(), "the overflow log line")

        pg.start()
        # Everything answered is written once the database is back, exactly once.
        _wait(
            lambda: answered <= {r["dedupe_key"] for r in gateway_rows(engine)},
            "buffered records",
        )
        rows = gateway_rows(engine)
        assert len(rows) == len(answered)
        assert len({r["correlation_id"] for r in rows}) == len(rows)
        assert list(mismatches(rows, simulator.calls())) == []
        with engine.connect() as conn:
            for key_id in (open_id, capped_id):
                spent, _ = read_counter(conn, ("key_daily", key_id, day_key(utcnow())))
                cost = sum(int(r["cost_nanousd"]) for r in rows if r["gateway_key_id"] == key_id)
                assert spent == cost, key_id  # fail-open spend counted once
        assert any(r["gateway_key_id"] == open_id for r in rows)

        # Both processes serve the capped keys again.
        # A failed grant blocks further grants for GRANT_RETRY_S (no connect timeout
        # per request while the database is down); after that they work again.
        time.sleep(GRANT_RETRY_S)
        for out in (
            one_call(oc, ac, "openai", 1),
            one_call(oc2, ac2, "anthropic", 2),
            one_call(oc3, ac3, "openai_stream", 3),
        ):
            assert out.status == 200, out
        assert closed_srv.term() in GRACEFUL_EXIT
        assert open_srv.term() in GRACEFUL_EXIT
    finally:
        for c in clients:
            c.close()
        closed_srv.kill()
        open_srv.kill()
    for srv in (closed_srv, open_srv):
        log = srv.log()
        assert "database write failed" in log and "database writes resumed" in log, log
        assert log.count("database write failed") == 1  # once per outage, not per retry
    assert len(gateway_rows(engine)) == len(answered) + 3
