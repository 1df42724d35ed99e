"""``metis ingest token|push|hermes-import`` through the real CLI."""

import hashlib
import json
import sqlite3
from pathlib import Path

from sqlalchemy import Engine, select

from metis.db.tables import ingest_tokens, usage_records
from tests.conftest import Cli


def test_token_lifecycle(cli: type[Cli], engine: Engine) -> None:
    cli.ok("workspace", "add", "acme")
    out = cli.ok("ingest", "token", "create", "--workspace", "acme", "--name", "laptop").stdout
    secret = out.strip().splitlines()[-1]
    assert secret.startswith("mit_") and len(secret) > 40
    with engine.connect() as c:
        row = c.execute(select(ingest_tokens)).mappings().one()
    assert row["secret_sha256"] == hashlib.sha256(secret.encode()).hexdigest()
    assert row["source"] == "hermes_plugin" and secret not in str(dict(row))
    listed = cli.ok("ingest", "token", "list", "--json").stdout
    assert secret not in listed
    (tok,) = json.loads(listed)
    assert tok["name"] == "laptop" and tok["revoked_at"] is None
    cli.ok("ingest", "token", "revoke", tok["id"])
    (tok,) = json.loads(cli.ok("ingest", "token", "list", "--json").stdout)
    assert tok["revoked_at"] is not None

    bad = cli.run(
        "ingest", "token", "create", "--workspace", "acme", "--name", "x", "--source", "gateway"
    )
    assert bad.exit_code == 1 and "reserved" in bad.stderr
    bad = cli.run("ingest", "token", "create", "--workspace", "nope", "--name", "x")
    assert bad.exit_code == 1 and bad.stderr.startswith("error: unknown workspace")
    bad = cli.run("ingest", "token", "revoke", "itok_nope")
    assert bad.exit_code == 1 and "unknown ingest token" in bad.stderr


def test_push_file(cli: type[Cli], engine: Engine, tmp_path: Path) -> None:
    cli.ok("workspace", "add", "acme")
    good = {
        "idempotency_key": "k1",
        "time": "2026-11-01T10:00:00Z",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "input_tokens": 100,
        "output_tokens": 10,
        "cost_usd": 0.000123,
    }
    f = tmp_path / "usage.jsonl"
    f.write_text(json.dumps(good) + "\n\n" + json.dumps({**good, "idempotency_key": "k2"}) + "\n")
    r = cli.ok("ingest", "push", str(f), "--workspace", "acme")
    assert "2 accepted, 0 unchanged, 0 revised, 0 rejected" in r.stdout
    r = cli.ok("ingest", "push", str(f), "--workspace", "acme", "--json")
    assert json.loads(r.stdout)["unchanged"] == ["k1", "k2"]
    with engine.connect() as c:
        costs = sorted(c.execute(select(usage_records.c.cost_nanousd)).scalars())
    assert costs == [123_000, 123_000]

    f.write_text(
        json.dumps({**good, "idempotency_key": "k3"})
        + "\n{broken\n"
        + json.dumps({**good, "idempotency_key": "k4", "input_tokens": -5})
        + "\n"
    )
    r = cli.run("ingest", "push", str(f), "--workspace", "acme")
    assert r.exit_code == 1
    assert "1 accepted" in r.stdout and "2 rejected" in r.stdout
    assert "line 2: bad JSON" in r.stderr and "line 3: input_tokens" in r.stderr
    with engine.connect() as c:
        keys = sorted(c.execute(select(usage_records.c.dedupe_key)).scalars())
    assert keys == ["k1", "k2", "k3"]
    missing = cli.run("ingest", "push", str(tmp_path / "nope.jsonl"), "--workspace", "acme")
    assert missing.exit_code == 1 and "cannot read" in missing.stderr


def _state_db(path: Path) -> None:
    """A state.db with the columns of Hermes' schema that the import reads."""
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
        INSERT INTO sessions VALUES ('s1', 'cli', 'gpt-4o-mini', 1793000000, 1793000600,
          'custom', 'http://127.0.0.1:9/v1');
        INSERT INTO session_model_usage VALUES ('s1', 'gpt-4o-mini', 'custom',
          'http://127.0.0.1:9/v1', '', '', 3, 1000, 50, 200, 0, 0, 0, 0, NULL, NULL,
          1793000010, 1793000500);
        INSERT INTO session_model_usage VALUES ('s1', 'claude-haiku-4-5', 'anthropic', '', '',
          'title', 1, 10, 5, 0, 40, 0, 0, 0, NULL, NULL, 1793000020, 1793000020);
        """
    )
    con.commit()
    con.close()


def test_hermes_import(cli: type[Cli], engine: Engine, tmp_path: Path) -> None:
    cli.ok("workspace", "add", "acme")
    db = tmp_path / "state.db"
    _state_db(db)
    r = cli.ok("ingest", "hermes-import", "--state-db", str(db), "--workspace", "acme")
    assert "2 session usage rows: 2 imported" in r.stdout
    with engine.connect() as c:
        rows = {
            r["provider"]: r
            for r in c.execute(select(usage_records).order_by(usage_records.c.provider)).mappings()
        }
    o, a = rows["openai"], rows["anthropic"]
    assert o["granularity"] == "session" and o["source"] == "hermes_plugin"
    assert o["input_tokens"] == 1200 and o["cached_input_tokens"] == 200  # canonical: incl. cache
    assert o["request_count"] == 3 and o["session_id"] == "s1"
    assert o["base_url"] == "http://127.0.0.1:9/v1" and o["cost_source"] == "computed"
    assert a["input_tokens"] == 50 and a["cache_creation_input_tokens"] == 40
    assert a["window_end"] > a["window_start"]
    again = cli.ok("ingest", "hermes-import", "--state-db", str(db), "--workspace", "acme")
    assert "0 imported, 0 revised, 2 unchanged" in again.stdout
    bad = cli.run(
        "ingest", "hermes-import", "--state-db", str(tmp_path / "x.db"), "--workspace", "acme"
    )
    assert bad.exit_code == 1 and "no Hermes state database" in bad.stderr
    (tmp_path / "other.db").write_bytes(b"")
    sqlite3.connect(tmp_path / "other.db").close()
    bad = cli.run(
        "ingest", "hermes-import", "--state-db", str(tmp_path / "other.db"), "--workspace", "acme"
    )
    assert bad.exit_code == 1 and "not a Hermes state.db" in bad.stderr


def test_token_settings_cli(cli: type[Cli], engine: Engine) -> None:
    cli.ok("workspace", "add", "acme")
    cli.ok("gateway", "user", "add", "--name", "Ada Lovelace", "--alias", "ada")
    out = cli.ok(
        "ingest", "token", "create", "--workspace", "acme", "--name", "ada-claude",
        "--source", "otel", "--via-gateway", "--user", "ada", "--json",
    ).stdout  # fmt: skip
    tok = json.loads(out)
    assert tok["via_gateway"] is True and tok["user_id"].startswith("usr_")
    (listed,) = json.loads(cli.ok("ingest", "token", "list", "--json").stdout)
    assert listed["via_gateway"] is True and listed["user_id"] == tok["user_id"]
    cli.ok("ingest", "token", "set", tok["id"], "--direct", "--no-user")
    with engine.connect() as c:
        row = c.execute(select(ingest_tokens)).mappings().one()
    assert row["via_gateway"] is False and row["user_id"] is None
    cli.ok("ingest", "token", "set", tok["id"], "--user", "ada")
    with engine.connect() as c:
        row = c.execute(select(ingest_tokens)).mappings().one()
    assert row["via_gateway"] is False and row["user_id"] == tok["user_id"]
    bad = cli.run("ingest", "token", "set", tok["id"], "--user", "nobody")
    assert bad.exit_code == 1 and "unknown user" in bad.stderr
    bad = cli.run("ingest", "token", "set", tok["id"], "--user", "ada", "--no-user")
    assert bad.exit_code == 1 and "not both" in bad.stderr
    bad = cli.run(
        "ingest", "token", "create", "--workspace", "acme", "--name", "x", "--user", "nobody"
    )
    assert bad.exit_code == 1 and "unknown user" in bad.stderr
