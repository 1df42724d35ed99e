"""The Hermes plugin (integrations/hermes): mapping, down-time spooling, and a real Hermes run.

The real-Hermes test needs a Python with ``hermes-agent`` installed, in its own
venv (its dependencies are not Metis's): ``METIS_HERMES_PYTHON``, else
``.hermes-venv`` (made by ``scripts/hermes-venv.sh``, which ``scripts/test.sh``
runs) or ``/tmp/hermes-venv``.
The test installs the plugin into that venv (``pip install --no-deps``) and
skips when no such Python exists. It is marked ``slow`` (about a minute).
"""

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from metis.db.tables import usage_records
from metis.ingest import tokens
from metis.server import create_app
from metis.util.server_thread import ServerThread, free_port
from metis.workspaces import add_workspace

ROOT = Path(__file__).resolve().parents[2]
PLUGIN_DIR = ROOT / "integrations" / "hermes"
sys.path.insert(0, str(PLUGIN_DIR))

from metis_hermes import usage_item  # noqa: E402
from metis_hermes.sender import Sender  # noqa: E402


def test_usage_item_converts_hermes_buckets_to_canonical() -> None:
    kw = {
        "api_request_id": "t1:api:1",
        "session_id": "s1",
        "provider": "custom",
        "api_mode": "chat_completions",
        "base_url": "http://gw:4000/v1",
        "model": "gpt-4o-mini",
        "response_model": "gpt-4o-mini-2024-07-18",
        "started_at": 1_790_000_000.0,
        "ended_at": 1_790_000_001.5,
        # Hermes: input_tokens excludes cache reads/writes; reasoning is part of output.
        "usage": {
            "input_tokens": 100,
            "cache_read_tokens": 30,
            "cache_write_tokens": 20,
            "output_tokens": 40,
            "reasoning_tokens": 10,
            "prompt_tokens": 150,
        },
    }
    item = usage_item("post_api_request", kw)
    assert item is not None
    assert item["idempotency_key"] == "hermes:t1:api:1"
    assert item["input_tokens"] == 150
    assert item["cached_input_tokens"] == 30 and item["cache_creation_input_tokens"] == 20
    assert item["output_tokens"] == 40 and item["reasoning_tokens"] == 10
    assert item["provider"] == "openai" and item["model"] == "gpt-4o-mini-2024-07-18"
    assert item["time"] == "2026-09-21T14:13:21.500000Z"
    assert item["base_url"] == "http://gw:4000/v1" and item["session_id"] == "s1"
    assert usage_item("post_api_request", {**kw, "usage": None}) is None
    aux = usage_item("post_auxiliary_call", {**kw, "api_request_id": "", "aux_task": "title"})
    assert aux is not None and aux["metadata"]["aux_task"] == "title"
    assert aux["idempotency_key"].startswith("hermes:gen-")


def _items(prefix: str, n: int) -> list[dict[str, Any]]:
    return [
        {
            "idempotency_key": f"{prefix}-{i}",
            "time": "2026-11-01T10:00:00Z",
            "provider": "openai",
            "model": "gpt-4o-mini",
            "input_tokens": 10 + i,
            "output_tokens": 5,
        }
        for i in range(n)
    ]


def _wait(pred: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def test_downtime_every_item_arrives_once(
    metis_env: dict[str, str], engine: Engine, tmp_path: Path
) -> None:
    with engine.begin() as c:
        add_workspace(c, "acme")
        _, secret = tokens.create_token(c, "acme", "hermes")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    spool = tmp_path / "spool"
    sender = Sender(url, secret, spool, batch_size=50, flush_interval=0.05, max_backoff=0.2)

    def stored() -> list[Any]:
        with engine.connect() as c:
            return list(c.execute(select(usage_records.c.dedupe_key, usage_records.c.revision)))

    try:
        srv = ServerThread(create_app(), port=port).start()
        for it in _items("up", 120):
            sender.submit(it)
        _wait(lambda: len(stored()) == 120 and sender.pending() == 0)
        srv.stop()  # Metis goes down while the agent keeps working

        t0 = time.monotonic()
        for it in _items("down", 230):
            sender.submit(it)  # never blocks on the dead server
        assert time.monotonic() - t0 < 1.0
        _wait(lambda: len(list(spool.glob("batch-*.json"))) >= 5)
        assert len(stored()) == 120

        srv = ServerThread(create_app(), port=port).start()  # back up
        _wait(lambda: sender.pending() == 0 and len(stored()) == 350, timeout=30)
        rows = stored()
        assert len({k for k, _ in rows}) == 350 and {r for _, r in rows} == {1}
        # A batch whose answer was lost is resent: a no-op.
        sender._spool(_items("down", 50))
        _wait(lambda: sender.pending() == 0)
        assert stored() == rows
        srv.stop()
    finally:
        sender.close(timeout=1)
    assert sender.rejected == []


# --------------------------------------------------------------------- real Hermes


def _hermes_python() -> str | None:
    env = os.environ.get("METIS_HERMES_PYTHON")
    for cand in (
        [env] if env else [str(ROOT / ".hermes-venv/bin/python"), "/tmp/hermes-venv/bin/python"]
    ):
        if not Path(cand).exists():
            continue
        ok = subprocess.run(
            [cand, "-c", "import hermes_cli.plugins, run_agent"], capture_output=True, timeout=60
        )
        if ok.returncode == 0:
            return cand
    return None


@pytest.fixture(scope="module")
def hermes_python() -> Iterator[str]:
    py = _hermes_python()
    if py is None:
        pytest.skip("no Python with hermes-agent (set METIS_HERMES_PYTHON)")
    r = subprocess.run(
        [py, "-m", "pip", "install", "-q", "--no-deps", str(PLUGIN_DIR)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    yield py


def _run_hermes(
    py: str, home: Path, base_url: str, api_key: str, metis_url: str, token: str, n: int
) -> dict[str, Any]:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.yaml").write_text("plugins:\n  enabled: [metis]\n")
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("METIS_", "OPENAI", "ANTHROPIC"))
    }
    env.update(
        HERMES_HOME=str(home),
        METIS_INGEST_URL=metis_url,
        METIS_INGEST_TOKEN=token,
        METIS_SPOOL_DIR=str(home / "spool"),
        METIS_FLUSH_INTERVAL="0.2",
    )
    p = subprocess.run(
        [
            py,
            str(Path(__file__).with_name("hermes_driver.py")),
            base_url,
            api_key,
            "gpt-4o-mini",
            str(n),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    out: dict[str, Any] = json.loads(p.stdout.strip().splitlines()[-1])
    return out


@pytest.mark.slow
def test_real_hermes_direct_and_via_gateway_reconcile_once(
    hermes_python: str,
    simulator: Any,
    gateway_factory: Any,
    cli: Any,
    engine: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fast_ingest: None,
) -> None:
    gw = gateway_factory(simulator.url)
    monkeypatch.setenv("METIS_GATEWAY_URLS", gw.url)
    gw_key_id, gw_secret = gw.issue_key("hermes-gw", user="ada")
    with engine.begin() as c:
        _, ingest_secret = tokens.create_token(c, gw.workspace_id, "hermes")

    direct = _run_hermes(
        hermes_python,
        tmp_path / "h1",
        simulator.openai_base_url,
        simulator.openai_key,
        gw.url,
        ingest_secret,
        2,
    )
    via = _run_hermes(
        hermes_python, tmp_path / "h2", gw.url + "/v1", gw_secret, gw.url, ingest_secret, 2
    )
    for run in (direct, via):
        assert run["plugin"]["enabled"] and run["plugin"]["source"] == "entrypoint"
        assert run["plugin"]["error"] is None and run["plugin"]["hooks"] >= 1
        assert run["spooled"] == 0 and run["rejected"] == []
    gw.flush()

    cli.ok(
        "provider-key",
        "add",
        "-w",
        "w",
        "--provider",
        "openai",
        "--purpose",
        "usage_admin",
        "--base-url",
        simulator.url,
        input=simulator.openai_admin_key,
    )
    cli.ok("ingest", "sync", "--workspace", "w", "--days", "1")
    admin = cli.ok("admin", "token", "create", "--name", "t").stdout.strip().splitlines()[-1]
    r = httpx.get(
        gw.url + "/analytics/reconciliation",
        params={"workspace": "w"},
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert r.status_code == 200, r.text
    cells = [c for c in r.json()["cells"] if c["provider"] == "openai"]
    truth = simulator.ground_truth()["providers"]["openai"]
    assert truth["requests"] == 4
    assert len(cells) == 1, cells
    cell = cells[0]
    src = cell["sources"]
    assert cell["covered_by_provider"] is True
    assert src["gateway"]["request_count"] == 2  # the via-gateway calls, stamped to ada
    assert src["plugin_via_gateway"]["request_count"] == 2  # the plugin's copies, not counted
    assert src["plugin"]["request_count"] == 2  # the direct calls, seen by the plugin only
    assert src["provider_api_key"]["input_tokens"] == truth["input_tokens"]
    rec = cell["reconciled"]
    assert rec["input_tokens"] == truth["input_tokens"]
    assert rec["output_tokens"] == truth["output_tokens"]
    assert rec["cost_nanousd"] == truth["cost_nanousd"]
    assert cell["attributed"]["input_tokens"] == truth["input_tokens"]
    assert cell["unattributed"]["input_tokens"] == 0 and "drift" not in cell["flags"]
    with engine.connect() as c:  # the gateway's rows carry Ada's key and user id
        stamped = c.execute(
            select(usage_records.c.gateway_key_id, usage_records.c.user_id).where(
                usage_records.c.source == "gateway"
            )
        ).all()
    assert len(stamped) == 2 and {k for k, _ in stamped} == {gw_key_id}
    assert all(u is not None and u.startswith("usr_") for _, u in stamped)

    # Hermes' own state.db (written by the same run) imports as a session rollup with the
    # same tokens the plugin pushed call by call; into the live workspace it is skipped.
    db = tmp_path / "h1" / "state.db"
    r1 = cli.ok("ingest", "hermes-import", "--state-db", str(db), "--workspace", "w")
    assert "0 imported" in r1.stdout and "1 skipped" in r1.stdout
    cli.ok("workspace", "add", "w2")
    r2 = cli.ok("ingest", "hermes-import", "--state-db", str(db), "--workspace", "w2")
    assert "1 imported" in r2.stdout
    with engine.connect() as c:
        rows = c.execute(
            select(
                usage_records.c.workspace_id,
                usage_records.c.granularity,
                usage_records.c.input_tokens,
                usage_records.c.output_tokens,
                usage_records.c.request_count,
                usage_records.c.model,
            ).where(usage_records.c.session_id == direct["session_id"])
        ).all()
    live = [r for r in rows if r.workspace_id == gw.workspace_id]
    (imported,) = [r for r in rows if r.workspace_id != gw.workspace_id]
    assert imported.granularity == "session" and len(live) == 2
    assert imported.input_tokens == sum(r.input_tokens for r in live)
    assert imported.output_tokens == sum(r.output_tokens for r in live)
    assert imported.request_count == 2 and {r.model for r in rows} == {"gpt-4o-mini"}
