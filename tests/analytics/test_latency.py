"""`/analytics/reliability` latency figures over HTTP: from the histograms (plus raw
partial-day edges) within 2% of the exact nearest-rank values of the records in the
window, whatever the window's edges; exact from raw records under identity filters."""

import json
import math
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from metis.analytics import service
from metis.analytics.latency import nearest_rank
from metis.analytics.params import Filters, Window
from metis.jsonutil import dumps as json_dumps
from metis.ledger.latency_rollups import RELATIVE_ERROR
from metis.ledger.record import UsageRecord
from tests.analytics import seed
from tests.analytics.seed import rec

T0 = datetime(2026, 11, 2, tzinfo=UTC)
QS = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}
USERS = (("usr_a", "key_a"), ("usr_b", "key_b"))


def _latency(rng: random.Random, model: str) -> int | None:
    if rng.random() < 0.03:
        return None  # a call without a measured latency: counted as a call, not a latency
    if model == "gpt-4o":  # lognormal
        return int(rng.lognormvariate(math.log(900), 0.8))
    if model == "gpt-4o-mini":  # heavy tail
        return int(40 * rng.paretovariate(1.2))
    if model == "o3":  # constant
        return 2_500
    return 0 if rng.random() < 0.9 else rng.randint(1, 60_000)  # mostly zeros


@pytest.fixture
def calls(engine: Engine, cli: Any) -> list[UsageRecord]:
    """~3,000 gateway calls over five days, four latency shapes, two users (and plugin rows)."""
    rng = random.Random(23)
    recs: list[UsageRecord] = []
    with engine.begin() as c:
        seed.ws(c)
        for uid, kid in USERS:
            seed.user(c, uid, uid.removeprefix("usr_"))
            seed.key(c, kid, kid, uid, None)
        for _ in range(3_000):
            model = rng.choice(["gpt-4o", "gpt-4o", "gpt-4o-mini", "o3", "gpt-4.1"])
            uid, kid = rng.choice(USERS)
            at = T0 + timedelta(seconds=rng.randrange(5 * 86_400))
            status = "ok" if rng.random() > 0.05 else "upstream_error"
            recs.append(rec(at=at, cost=1, model=model, latency_ms=_latency(rng, model),
                            status=status, key_id=kid, user_id=uid))  # fmt: skip
        # Plugin rows carry latencies too; reliability counts gateway calls only.
        plugin = [rec(at=T0 + timedelta(hours=h), cost=1, source="hermes_plugin",
                      latency_ms=1) for h in range(30)]  # fmt: skip
        seed.write(c, recs + plugin)
    return recs


def _get(api: httpx.Client, **params: str) -> Any:
    r = api.get("/analytics/reliability", params=params)
    assert r.status_code == 200, r.text
    return json.loads(r.text, parse_float=Decimal)


def _exact(
    recs: list[UsageRecord], start: datetime, end: datetime, user: str | None = None
) -> dict[str, tuple[int, list[int]]]:
    """Per model: calls in [start, end) and their sorted latencies."""
    out: dict[str, tuple[int, list[int]]] = {}
    for r in recs:
        if start <= r.window_start < end and user in (None, r.user_id):
            n, vals = out.get(r.model, (0, []))
            out[r.model] = (n + 1, vals + ([r.latency_ms] if r.latency_ms is not None else []))
    return {m: (n, sorted(v)) for m, (n, v) in out.items()}


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


WINDOWS = {
    "whole days": (T0, T0 + timedelta(days=5)),
    "partial-day edges": (T0 + timedelta(hours=7, minutes=13), T0 + timedelta(days=3, hours=17)),
    "inside one day": (T0 + timedelta(days=1, hours=2), T0 + timedelta(days=1, hours=20)),
    "one whole day, ragged end": (T0 + timedelta(days=2), T0 + timedelta(days=3, seconds=1)),
}


def _check(body: Any, exact: dict[str, tuple[int, list[int]]]) -> None:
    assert (body["latency_method"], body["relative_error"]) == ("histogram", Decimal("0.02"))
    assert {d["model"]: d["calls"] for d in body["data"]} == {m: n for m, (n, _) in exact.items()}
    assert body["latency_sample"]["rows"] == sum(len(v) for _, v in exact.values())
    for d in body["data"]:
        vals = exact[d["model"]][1]
        want = {k: nearest_rank(vals, q) for k, q in QS.items()} | {"max": vals[-1]}
        for k, v in want.items():
            assert v is not None
            got = d["latency_ms"][k]
            assert abs(Fraction(got - v)) <= RELATIVE_ERROR * v, (d["model"], k, got, v)


@pytest.mark.parametrize("name", sorted(WINDOWS))
def test_any_window_is_within_the_bound_of_exact_nearest_rank(
    engine: Engine, calls: list[UsageRecord], name: str
) -> None:
    """The query layer answers any half-open window: histogram days plus raw edges."""
    start, end = WINDOWS[name]
    with engine.connect() as c:
        body = json.loads(json_dumps(service.reliability(c, Window(start, end), Filters())),
                          parse_float=Decimal)  # fmt: skip
    _check(body, _exact(calls, start, end))


def test_the_endpoint_answers_whole_days_from_the_histograms(
    api: httpx.Client, calls: list[UsageRecord]
) -> None:
    """Over HTTP the window is widened to whole UTC days (the default view's resolution)."""
    start, end = WINDOWS["partial-day edges"]
    body = _get(api, **{"from": _iso(start), "to": _iso(end)})
    assert body["window"] == {"start": "2026-11-02T00:00:00Z", "end": "2026-11-06T00:00:00Z"}
    _check(body, _exact(calls, T0, T0 + timedelta(days=4)))


def test_the_mostly_zero_model_reports_zero_exactly(
    api: httpx.Client, calls: list[UsageRecord]
) -> None:
    body = _get(api, **{"from": _iso(T0), "to": _iso(T0 + timedelta(days=5))})
    zeros = next(d for d in body["data"] if d["model"] == "gpt-4.1")
    assert zeros["latency_ms"]["p50"] == 0  # 90% of its calls took 0 ms: its own bucket


def test_an_identity_filter_reads_raw_records_exactly(
    api: httpx.Client, calls: list[UsageRecord]
) -> None:
    body = _get(api, **{"from": _iso(T0), "to": _iso(T0 + timedelta(days=4)), "user": "a"})
    assert (body["latency_method"], body["relative_error"]) == ("raw", 0)
    assert body["latency_sample"]["exact"] is True
    exact = _exact(calls, T0, T0 + timedelta(days=4), user="usr_a")
    assert {d["model"]: d["calls"] for d in body["data"]} == {m: n for m, (n, _) in exact.items()}
    for d in body["data"]:
        vals = exact[d["model"]][1]
        want = {k: nearest_rank(vals, q) for k, q in QS.items()} | {"max": vals[-1]}
        assert d["latency_ms"] == want
