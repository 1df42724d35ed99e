"""Identity through the real gateway: CLI-issued keys, stamping, 401s, no PII in events.

Uses the ``gateway`` fixture (tests/plugins/servers.py: the full server on a
stub upstream, workspace ``w``) and the real ``metis gateway`` CLI on the same
database; requests go through the official OpenAI SDK.
"""

import json

import openai
import pytest
from sqlalchemy import select

from metis.db.tables import events, usage_records, users
from metis.identity.validate import email_sha256
from tests.conftest import Cli
from tests.plugins.servers import GatewayServer

EMAIL = "alice.liu@example.org"


def _issue(cli: type[Cli], *args: str) -> dict[str, str]:
    out = cli.ok(
        "gateway", "issue-key", "--workspace", "w", "--json", "--create-missing", *args
    ).stdout
    return dict(json.loads(out))


def _chat(g: GatewayServer, token: str) -> None:
    g.openai(token).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=3
    )


def test_user_key_end_to_end_stamps_user_and_fails_after_disable(
    gateway: GatewayServer, cli: type[Cli]
) -> None:
    cli.ok("gateway", "user", "add", "--name", "Alice Liu", "--email", EMAIL, "--alias", "alice")
    bound = _issue(cli, "--name", "alice-cc", "--user", "alice", "--team", "eng")
    legacy = _issue(cli, "--name", "ci")  # no --user/--team
    gateway.wait_keys()
    _chat(gateway, bound["token"])
    _chat(gateway, legacy["token"])
    gateway.flush()
    with gateway.engine.connect() as conn:
        uid = conn.execute(select(users.c.id).where(users.c.alias == "alice")).scalar_one()
        calls = {
            r.gateway_key_id: r
            for r in conn.execute(select(events).where(events.c.type == "llm.call_completed"))
        }
        recs = {r.gateway_key_id: r for r in conn.execute(select(usage_records))}
    assert calls[bound["id"]].payload["user_id"] == uid == calls[bound["id"]].user_id
    assert calls[bound["id"]].payload["team_id"] == bound["team_id"]
    assert (recs[bound["id"]].user_id, recs[bound["id"]].team_id) == (uid, bound["team_id"])
    # A key issued without --user/--team keeps working under the null bucket.
    assert calls[legacy["id"]].payload["user_id"] is None
    assert calls[legacy["id"]].payload["team_id"] is None
    assert (recs[legacy["id"]].user_id, recs[legacy["id"]].team_id) == (None, None)

    cli.ok("gateway", "user", "disable", "alice")
    cli.ok("gateway", "revoke-key", legacy["id"], "--reason", "rotated")
    gateway.wait_keys()
    for token in (bound["token"], legacy["token"]):
        with pytest.raises(openai.AuthenticationError) as exc:
            _chat(gateway, token)
        assert exc.value.status_code == 401
        assert "authentication_error" in str(exc.value.body), exc.value.body

    # The PII check: a dump of the events table has no '@' and no email hash.
    gateway.flush()
    with gateway.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(select(events)).mappings()]
    types = {r["type"] for r in rows}
    assert {"gateway.key_issued", "gateway.key_revoked", "llm.call_completed"} <= types
    dumped = repr(rows)
    assert "@" not in dumped and email_sha256(EMAIL) not in dumped
    assert bound["token"] not in dumped and legacy["token"] not in dumped
