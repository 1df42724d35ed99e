"""``metis gateway key set`` (issue 18 #8) and spec 003 test plan #5, through the product.

A key is first used without a user, then bound to one: within a window holding
both, every team-filtered answer (``/analytics/cost``, ``/analytics/by_team``,
``/analytics/routing``, ``/analytics/reliability``) carries ``partial_coverage``.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from sqlalchemy import Engine, select

from metis.analytics.admin_tokens import create_token
from metis.db.tables import events, usage_records
from tests.identity.helpers import events_of
from tests.plugins.servers import GatewayServer


def _call(gateway: GatewayServer, secret: str) -> None:
    gateway.openai(secret).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=5
    )


def test_rebinding_a_key_fires_partial_coverage_everywhere(
    gateway: GatewayServer, cli: Any, engine: Engine
) -> None:
    out = cli.ok("gateway", "issue-key", "--name", "shared", "--workspace", "w").stdout
    secret = next(line for line in out.splitlines() if line.startswith("gw_"))
    key_id = next(w for w in out.split() if w.startswith("key_"))
    _call(gateway, secret)  # used without a user
    cli.ok("gateway", "user", "add", "--name", "Alice", "--alias", "alice")
    cli.ok("gateway", "team", "add", "--name", "eng")
    r = cli.ok("gateway", "key", "set", key_id, "--user", "alice", "--team", "eng")
    assert f"gateway key {key_id} (shared) bound to user alice, team eng" in r.stdout
    gateway.wait_keys()
    _call(gateway, secret)  # now stamped with alice / eng
    gateway.flush()
    with engine.connect() as c:
        stamped = c.execute(select(usage_records.c.user_id).order_by(usage_records.c.id)).all()
    (ev,) = events_of(engine, "gateway.key_updated")
    assert stamped[0][0] is None and stamped[1][0] is not None
    assert ev["payload"]["key_id"] == key_id and ev["payload"]["previous_user_id"] is None
    assert ev["payload"]["user_id"] == stamped[1][0] and ev["gateway_key_id"] == key_id
    assert "@" not in json.dumps(ev["payload"])
    with engine.begin() as c:
        token = create_token(c, "t")[1]
    with httpx.Client(
        base_url=gateway.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as api:
        for path in ("/analytics/cost", "/analytics/by_team", "/analytics/routing",
                     "/analytics/reliability"):  # fmt: skip
            body = api.get(path, params={"team": "eng"}).json()
            assert body["partial_coverage"] is True, path
        audit = api.get("/export/audit", params={"format": "jsonl"}).text.splitlines()
        updated = [json.loads(x) for x in audit if '"key_updated"' in x]
        assert len(updated) == 1 and updated[0]["key_id"] == key_id
        assert updated[0]["previous_user_id"] is None and updated[0]["user_id"]
    # unbinding, a no-op, and bad input
    r = cli.ok("gateway", "key", "set", key_id, "--team", "none")
    assert "team none" in r.stdout
    assert "already bound" in cli.ok("gateway", "key", "set", key_id, "--team", "none").stdout
    for args, needle in (
        ((key_id,), "nothing to change"),
        ((key_id, "--user", "bob"), "unknown user 'bob'"),
        (("key_nope", "--user", "alice"), "unknown gateway key"),
    ):
        bad = cli.run("gateway", "key", "set", *args)
        assert bad.exit_code != 0 and needle in bad.stderr, bad.stderr
    cli.ok("gateway", "revoke-key", key_id)
    bad = cli.run("gateway", "key", "set", key_id, "--user", "alice")
    assert bad.exit_code != 0 and "revoked" in bad.stderr
    with engine.connect() as c:
        assert (
            len(c.execute(select(events).where(events.c.type == "gateway.key_updated")).all()) == 2
        )
