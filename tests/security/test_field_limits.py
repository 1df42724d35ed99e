"""Every stored text field is bounded at the edge (issue 19 item 2, the non-gateway edges).

The red-team input: random 5 MB model names, recorded anyway (usage record,
rollups, events), grew the SQLite file by about 74 MB per request and made
``/analytics/cost?group_by=model`` answer 16.7 MB. Here the same names reach
every other edge that stores data: the push API, a provider's usage report
(a hostile or buggy provider) and a Hermes ``state.db``. A client that can
correct its input gets a rejection naming the field; data Metis must keep
(a provider's reported usage) is stored with the field in its bounded form.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, func, select

from metis import jsonutil
from metis.analytics.admin_tokens import create_token as create_admin_token
from metis.db.tables import ingest_runs, usage_records, usage_rollups_daily
from metis.ingest import tokens
from metis.security import fields
from metis.server import create_app
from metis.timeutil import iso, utcnow
from metis.util.server_thread import ServerThread
from metis.workspaces import add_workspace
from tests.conftest import Cli
from tests.ingest.pull_fixtures import Provisioned, last_days

FIVE_MB = 5 * 1024 * 1024


def _random_name(n: int) -> str:
    return secrets.token_hex(n // 2 + 1)[:n]


def _stored(engine: Engine) -> list[dict[str, object]]:
    with engine.connect() as c:
        return [dict(r) for r in c.execute(select(usage_records)).mappings()]


def _longest_text(engine: Engine) -> int:
    """The longest text value in the usage and rollup tables."""
    longest = 0
    with engine.connect() as c:
        for table in (usage_records, usage_rollups_daily):
            for row in c.execute(select(table)).mappings():
                for v in row.values():
                    if isinstance(v, str):
                        longest = max(longest, len(v))
                    elif isinstance(v, dict):
                        longest = max(longest, len(jsonutil.dumps(v)))
    return longest


@pytest.fixture
def push_env(metis_env: dict[str, str], engine: Engine) -> Iterator[tuple[httpx.Client, str]]:
    with engine.begin() as c:
        add_workspace(c, "acme")
        _, secret = tokens.create_token(c, "acme", "red-team")
    with ServerThread(create_app()) as srv, httpx.Client(base_url=srv.url, timeout=60) as http:
        yield http, secret


def _item(key: str, **kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "idempotency_key": key,
        "time": iso(utcnow() - timedelta(minutes=5)),
        "provider": "openai",
        "model": "gpt-4o-mini",
        "input_tokens": 10,
    }
    base.update(kw)
    return base


def test_three_pushes_of_5mb_model_names_store_nothing(
    push_env: tuple[httpx.Client, str], engine: Engine
) -> None:
    http, secret = push_env
    auth = {"Authorization": f"Bearer {secret}"}
    for i in range(3):
        body = jsonutil.dumps({"items": [_item(f"k{i}", model=_random_name(FIVE_MB))]})
        r = http.post("/v1/ingest/usage", content=body, headers=auth)
        assert r.status_code == 413, r.text[:200]
    assert _stored(engine) == []


@pytest.mark.parametrize(
    ("field", "item"),
    [
        ("model", _item("m", model="m" * (fields.MODEL_MAX + 1))),
        ("idempotency_key", _item("k" * (fields.ID_MAX + 1))),
        ("correlation_id", _item("c", correlation_id="c" * (fields.ID_MAX + 1))),
        ("session_id", _item("s", session_id="s" * (fields.ID_MAX + 1))),
        ("user", _item("u", user="u" * (fields.NAME_MAX + 1))),
        ("service_tier", _item("t", service_tier="t" * (fields.SERVICE_TIER_MAX + 1))),
        ("base_url", _item("b", base_url="http://x/" + "b" * fields.BASE_URL_MAX)),
        ("metadata", _item("md", metadata={f"k{i}": i for i in range(21)})),
        ("metadata", _item("mk", metadata={"k" * (fields.METADATA_KEY_MAX + 1): 1})),
        ("metadata", _item("mv", metadata={"k": "v" * (fields.METADATA_VALUE_MAX + 1)})),
        ("metadata", _item("mt", metadata={f"k{i}": "v" * 400 for i in range(15)})),
    ],
    ids=lambda v: v if isinstance(v, str) else v["idempotency_key"][:8],
)
def test_an_oversized_push_field_is_rejected_by_name(
    push_env: tuple[httpx.Client, str], engine: Engine, field: str, item: dict[str, object]
) -> None:
    http, secret = push_env
    body = jsonutil.dumps({"items": [_item("ok"), item]})
    r = http.post("/v1/ingest/usage", content=body, headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 422, r.text
    out = r.json()
    assert out["accepted"] == ["ok"]
    (rej,) = out["rejected"]
    assert any(reason.startswith(field) or f"{field}:" in reason for reason in rej["reasons"]), rej
    assert [row["dedupe_key"] for row in _stored(engine)] == ["ok"]


def test_a_provider_report_with_5mb_model_names_is_stored_bounded(
    cli: type[Cli], provisioned: Provisioned, engine: Engine, metis_env: dict[str, str]
) -> None:
    """A hostile provider: its usage rows carry money, so they are kept, names bounded."""
    from tests.ingest.fake_admin import Row

    today = last_days(1)[0]
    names = [_random_name(FIVE_MB) for _ in range(2)]
    for name in names:
        provisioned.fake.rows.append(Row(today, name, "key_a", "proj_1", 100, 0, 0, 10, 1))
    cli.ok("ingest", "sync", "--days", "1")
    rows = _stored(engine)
    bounded = {fields.bounded(n, fields.MODEL_MAX) for n in names}
    assert bounded <= {r["model_raw"] for r in rows}
    assert len(bounded) == 2  # distinct names stay distinct
    assert _longest_text(engine) <= fields.METADATA_TOTAL_MAX
    with engine.connect() as c:
        details = jsonutil.dumps(c.execute(select(ingest_runs.c.details)).scalars().all())
    assert len(details) < 100_000
    # Idempotent: the same report maps to the same records.
    again = jsonutil.loads(cli.ok("ingest", "sync", "--days", "1", "--json").stdout)
    assert [(r["status"], r["errors"], r["stored"], r["updated"]) for r in again] == [
        ("ok", 0, 0, 0)
    ]
    key = sorted(rows, key=lambda r: str(r["dedupe_key"]))
    assert [
        r["model_raw"] for r in sorted(_stored(engine), key=lambda r: str(r["dedupe_key"]))
    ] == [r["model_raw"] for r in key]
    with engine.begin() as c:
        _, admin = create_admin_token(c, "reader")
    with ServerThread(create_app()) as srv:
        r = httpx.get(
            f"{srv.url}/analytics/cost",
            params={"group_by": "model"},
            headers={"Authorization": f"Bearer {admin}"},
            timeout=30,
        )
    assert r.status_code == 200
    assert len(r.content) < 50_000


def _state_db(path: Path, model: str, task: str, session: str) -> None:
    con = sqlite3.connect(path)
    con.executescript(
        """
        CREATE TABLE sessions (id TEXT PRIMARY KEY, source TEXT NOT NULL, model TEXT,
          started_at REAL NOT NULL, ended_at REAL, billing_provider TEXT, billing_base_url TEXT);
        CREATE TABLE session_model_usage (
          session_id TEXT NOT NULL, model TEXT NOT NULL,
          billing_provider TEXT NOT NULL DEFAULT '', billing_base_url TEXT NOT NULL DEFAULT '',
          billing_mode TEXT NOT NULL DEFAULT '', task TEXT NOT NULL DEFAULT '',
          api_call_count INTEGER NOT NULL DEFAULT 0, input_tokens INTEGER NOT NULL DEFAULT 0,
          output_tokens INTEGER NOT NULL DEFAULT 0, cache_read_tokens INTEGER NOT NULL DEFAULT 0,
          cache_write_tokens INTEGER NOT NULL DEFAULT 0,
          reasoning_tokens INTEGER NOT NULL DEFAULT 0,
          estimated_cost_usd REAL NOT NULL DEFAULT 0, actual_cost_usd REAL NOT NULL DEFAULT 0,
          cost_status TEXT, cost_source TEXT, first_seen REAL, last_seen REAL,
          PRIMARY KEY (session_id, model, billing_provider, billing_base_url, billing_mode, task));
        """
    )
    con.execute(
        "INSERT INTO session_model_usage VALUES (?, ?, 'openai', ?, '', ?, 1, 10, 5, 0, 0, 0,"
        " 0, 0, NULL, NULL, 1793000010, 1793000500)",
        (session, model, "http://127.0.0.1:9/" + "p" * FIVE_MB, task),
    )
    con.commit()
    con.close()


def test_a_hermes_state_db_with_5mb_fields_is_imported_bounded(
    cli: type[Cli], engine: Engine, tmp_path: Path
) -> None:
    cli.ok("workspace", "add", "acme")
    db = tmp_path / "state.db"
    _state_db(db, _random_name(FIVE_MB), "t" * FIVE_MB, "s" * FIVE_MB)
    cli.ok("ingest", "hermes-import", "--state-db", str(db), "--workspace", "acme")
    (row,) = _stored(engine)
    assert len(str(row["model"])) <= fields.MODEL_MAX
    assert len(str(row["model_raw"])) <= fields.MODEL_MAX
    assert len(str(row["session_id"])) <= fields.ID_MAX
    assert len(str(row["base_url"])) <= fields.BASE_URL_MAX
    assert _longest_text(engine) <= fields.METADATA_TOTAL_MAX
    again = cli.ok("ingest", "hermes-import", "--state-db", str(db), "--workspace", "acme")
    assert "1 unchanged" in again.stdout  # the bounded forms are deterministic


def test_workspace_path_and_key_models_are_bounded(cli: type[Cli], engine: Engine) -> None:
    r = cli.run("workspace", "add", "acme", "--path", "/" + "p" * 5000)
    assert r.exit_code == 1 and "path" in r.stderr and "longer than" in r.stderr, r.output
    cli.ok("workspace", "add", "acme")
    many = ",".join(f"m{i}" for i in range(fields.MAX_ALLOWED_MODELS + 1))
    r = cli.run(
        "gateway", "issue-key", "--workspace", "acme", "--name", "k", "--allow-models", many
    )
    assert r.exit_code == 1 and "allow-models" in r.stderr, r.output
    with engine.connect() as c:
        assert c.execute(select(func.count()).select_from(usage_records)).scalar() == 0


def test_bounded_is_deterministic_distinct_and_short() -> None:
    a, b = "x" * 10_000 + "a", "x" * 10_000 + "b"
    assert fields.bounded(a, 200) == fields.bounded(a, 200)
    assert fields.bounded(a, 200) != fields.bounded(b, 200)
    assert len(fields.bounded(a, 200)) == 200
    assert fields.bounded("gpt-4o", 200) == "gpt-4o"
    assert "\n" not in fields.bounded("a\nb", 200)
    assert fields.bounded("a\nb", 200) != fields.bounded("a\rb", 200)
