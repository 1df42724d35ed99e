"""`forget_user` leaves the user's id in no table of the schema.

Checked over every string column of every table in `metis.db.tables.metadata`,
so a table added later (a new rollup, say) that keeps user ids fails here
until `forget_user` covers it.
"""

from datetime import UTC, datetime

from sqlalchemy import Engine, String, func, select

from metis.analytics.privacy import forget_user
from metis.db.tables import metadata
from metis.ledger.record import UsageRecord
from metis.ledger.upsert import upsert_usage
from tests.plugins.identity import make_key


def _records(ws: str, uid: str, team: str | None, key: str) -> list[UsageRecord]:
    at = datetime.now(UTC)
    common = dict(
        workspace_id=ws, window_start=at, window_end=at, granularity="request",
        provider="openai", model="gpt-4o", model_raw="gpt-4o", input_tokens=10,
        request_count=1, cost_nanousd=7, user_id=uid, team_id=team,
    )  # fmt: skip
    gw = dict(source="gateway", source_ref=key, gateway_key_id=key, status="ok")
    plugin = dict(source="hermes_plugin", source_ref="tok")
    return [
        UsageRecord(dedupe_key="g1", correlation_id="chatcmpl-1", **gw, **common),
        # A plugin twin of the gateway call (class duplicate) and a direct call (plugin).
        UsageRecord(dedupe_key="p1", correlation_id="chatcmpl-1", **plugin, **common),
        UsageRecord(dedupe_key="p2", base_url="https://api.openai.com/v1", **plugin, **common),
    ]


def test_no_table_keeps_a_forgotten_users_id(engine: Engine) -> None:
    k = make_key(engine)
    assert k.user_id is not None
    with engine.begin() as conn:
        upsert_usage(conn, _records(k.workspace_id, k.user_id, k.team_id, k.key_id))

    def holders() -> list[str]:
        found = []
        with engine.connect() as conn:
            for table in metadata.sorted_tables:
                for col in table.columns:
                    if not isinstance(col.type, String):
                        continue
                    q = select(func.count()).select_from(table).where(col == k.user_id)
                    if conn.execute(q).scalar():
                        found.append(f"{table.name}.{col.name}")
        return found

    before = holders()
    assert "usage_rollups_reconcile_identity.user_id" in before  # the check sees rollups
    assert "users.id" in before
    with engine.begin() as conn:
        forget_user(conn, k.user_id)
    # The users row keeps its id (it is the pseudonym's anchor); nothing else may.
    assert holders() == ["users.id"]
