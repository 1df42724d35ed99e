"""Issue 18 #3 end to end: today's figure after the last sync, on the API and the dashboard.

Real parts: the provider simulator, the gateway (``metis serve`` app) with the
official OpenAI SDK, ``metis ingest sync`` against the simulator's admin API,
then the admin API and the dashboard of the same server.
"""

import csv
import io
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import Engine, func, select

from metis.analytics.admin_tokens import create_token
from metis.db.tables import usage_records
from metis.timeutil import utcnow
from tests.conftest import Cli
from tests.web.conftest import CSRF_RE, login


def _calls(client: Any, n: int) -> None:
    for i in range(n):
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": f"question {i}"}]
        )


def _gateway_cost(engine: Engine) -> int:
    with engine.connect() as c:
        q = select(func.sum(usage_records.c.cost_nanousd)).where(
            usage_records.c.source == "gateway"
        )
        return int(c.execute(q).scalar_one() or 0)


def test_todays_figure_moves_after_the_sync_and_is_never_complete(
    simulator: Any, gateway_factory: Any, cli: type[Cli], engine: Engine, fast_ingest: None
) -> None:
    gw = gateway_factory(simulator.url)
    _, secret = gw.issue_key("ada-key", user="ada")
    client = gw.openai(secret)
    _calls(client, 3)
    gw.flush()
    cli.ok("provider-key", "add", "-w", "w", "--provider", "openai", "--purpose", "usage_admin",
           "--base-url", simulator.url, input=simulator.openai_admin_key)  # fmt: skip
    cli.ok("ingest", "sync", "--workspace", "w", "--days", "1")
    with engine.begin() as conn:
        token = create_token(conn, "t")[1]
    api = httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    today = utcnow().date()

    def total() -> Decimal:
        body = api.get("/analytics/cost", params={"group_by": "day"}).json(parse_float=Decimal)
        assert [d["day"] for d in body["data"]] == [today.isoformat()]
        lagging = body["provider_lagging"]
        assert [(x["provider"], x["day"]) for x in lagging] == [("openai", today.isoformat())]
        return Decimal(body["total"]["cost_usd"])

    def cell() -> dict[str, Any]:
        (c,) = api.get("/analytics/reconciliation").json()["cells"]
        return c  # type: ignore[no-any-return]

    before = total()
    assert before * 10**9 == _gateway_cost(engine) and "provider_lagging" in cell()["flags"]
    _calls(client, 5)  # after the last sync
    gw.flush()
    after = total()
    assert after > before and after * 10**9 == _gateway_cost(engine)  # moves with the gateway
    c = cell()
    assert "provider_lagging" in c["flags"] and "drift" not in c["flags"]
    assert c["drift"]["cost_nanousd"] == 0 and c["reconciled"]["request_count"] == 8
    assert c["sources"]["provider_api_key"]["request_count"] == 3  # as of the sync
    # never complete: the cursor does not claim the day, the dashboard says "as of sync"
    (health,) = [h for h in api.get("/analytics/ingest").json()["data"] if h["syncable"]]
    assert health["complete_through"] is None
    as_of = c["provider_synced_at"][11:16] + "Z"
    with httpx.Client(base_url=gw.url, timeout=30) as ui:
        assert login(ui, token).status_code == 303
        page = ui.get("/ui/ingestion").text
        assert CSRF_RE.search(page)
        rows = list(csv.DictReader(io.StringIO(ui.get("/ui/ingestion?csv=credentials").text)))
        (row,) = [r for r in rows if r["provider"] == "openai" and r["mode"] == "admin"]
        assert row["days_synced"] == "0/7"  # today is synced, but not over
        assert row["days_in_progress"] == f"{today} as of sync {as_of}"
        recon = ui.get("/ui/reconciliation").text
        assert f"day in progress, as of sync {as_of}" in recon
        overview = ui.get("/ui").text
        assert f"openai {today} is still in progress" in overview and as_of in overview
    # a later sync catches up; the day is still in progress, the figure stays put
    cli.ok("ingest", "sync", "--workspace", "w", "--days", "1")
    assert total() == after and cell()["sources"]["provider_api_key"]["request_count"] == 8
    api.close()
