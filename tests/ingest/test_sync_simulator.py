"""End to end against the provider simulator: traffic, sync, 30-day backfill == ground truth."""

import json
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from sqlalchemy import Engine, func, select

from metis.db.tables import usage_records
from tests.conftest import Cli
from tests.plugins.simulator import Simulator, SimulatorFactory

FIELDS = ("input_tokens", "output_tokens", "cached_input_tokens", "cache_creation_input_tokens")


def _traffic(sim: Simulator) -> None:
    for key in (sim.openai_key, sim.openai_key_2):
        oc = openai.OpenAI(base_url=sim.openai_base_url, api_key=key, max_retries=0)
        for model in ("gpt-4o-mini", "gpt-4.1-mini"):
            oc.chat.completions.create(
                model=model, messages=[{"role": "user", "content": f"hello from {key[-4:]}"}]
            )
        oc.embeddings.create(model="text-embedding-3-small", input=["a b c", "d e"])
        oc.close()
    for key in (sim.anthropic_key, sim.anthropic_key_2):
        ac = anthropic.Anthropic(base_url=sim.anthropic_base_url, api_key=key, max_retries=0)
        for model in ("claude-haiku-4-5-20251001", "claude-sonnet-4-6"):
            ac.messages.create(
                model=model, max_tokens=64, messages=[{"role": "user", "content": "hi there"}]
            )
        ac.close()


def _add_keys(cli: type[Cli], sim: Simulator) -> dict[str, str]:
    cli.ok("workspace", "add", "acme")
    ids = {}
    for provider, key in (("openai", sim.openai_admin_key), ("anthropic", sim.anthropic_admin_key)):
        out = cli.ok(
            "provider-key",
            "add",
            "-w",
            "acme",
            "--provider",
            provider,
            "--purpose",
            "usage_admin",
            "--base-url",
            sim.url,
            input=key,
        ).stdout
        ids[provider] = next(w for w in out.split() if w.startswith("cred_")).rstrip(":")
    return ids


def _ledger(engine: Engine, provider: str) -> dict[str, int]:
    cols = [*FIELDS, "request_count", "cost_nanousd"]
    with engine.connect() as conn:
        row = conn.execute(
            select(*[func.coalesce(func.sum(usage_records.c[c]), 0) for c in cols]).where(
                usage_records.c.provider == provider,
                usage_records.c.source == "provider_api_key",
            )
        ).one()
    return dict(zip(cols, (int(v) for v in row), strict=True))


def _truth(sim: Simulator, provider: str) -> dict[str, int]:
    t: dict[str, Any] = sim.ground_truth()["providers"].get(provider, {})
    out = {f: int(t.get(f, 0)) for f in FIELDS}
    out["cost_nanousd"] = int(t.get("cost_nanousd", 0))
    # Anthropic's usage report has no request count; OpenAI's num_model_requests is exact.
    out["request_count"] = int(t.get("requests", 0)) if provider == "openai" else 0
    return out


@pytest.mark.slow
def test_sync_and_backfill_equal_ground_truth(
    cli: type[Cli], simulator_factory: SimulatorFactory, engine: Engine, fast_ingest: None
) -> None:
    sim = simulator_factory(seed=5, history_days=29)
    _traffic(sim)
    _add_keys(cli, sim)
    runs = json.loads(cli.ok("ingest", "sync", "--json").stdout)
    assert {r["status"] for r in runs} == {"ok"}
    runs = json.loads(cli.ok("ingest", "backfill", "--days", "30", "--json").stdout)
    assert {r["status"] for r in runs} == {"ok"}, runs
    for p in ("openai", "anthropic"):
        assert _ledger(engine, p) == _truth(sim, p), p
    with engine.connect() as conn:
        srcs = set(conn.execute(select(usage_records.c.cost_source)).scalars())
    assert srcs == {"provider_reported"}
    # rerunning changes nothing
    again = json.loads(cli.ok("ingest", "sync", "--json").stdout)
    assert all(r["stored"] == 0 and r["updated"] == 0 and r["unchanged"] > 0 for r in again)
    refetch = json.loads(cli.ok("ingest", "backfill", "--days", "30", "--refetch", "--json").stdout)
    assert all(r["stored"] == 0 and r["updated"] == 0 for r in refetch), refetch
    for p in ("openai", "anthropic"):
        assert _ledger(engine, p) == _truth(sim, p), p


# Every fault mode once, spread over the four report endpoints so that no endpoint
# fails more often in a row than the retry budget (4 attempts in tests) allows.
FAULTS = {
    "/v1/organization/costs": [("429", {"retry_after": 0}), ("500", {}), ("503", {})],
    "/v1/organization/usage/completions": [("drop", {}), ("truncated", {})],
    "/v1/organizations/usage_report/messages": [("malformed", {}), ("529", {})],
    "/v1/organizations/cost_report": [("slow", {"delay": 0.2}), ("500", {})],
}


def test_every_fault_mode_completes_after_retries(
    cli: type[Cli], simulator_factory: SimulatorFactory, engine: Engine, fast_ingest: None
) -> None:
    sim = simulator_factory(seed=1, history_days=2)
    _add_keys(cli, sim)
    for ep, faults in FAULTS.items():
        for kind, opts in faults:
            sim.set_fault(ep, kind, count=1, **opts)
    runs = json.loads(cli.ok("ingest", "sync", "--days", "3", "--json").stdout)
    assert {r["status"] for r in runs} == {"ok"}, runs
    assert sim._get("/_sim/faults")["faults"] == []  # every fault was hit
    for p in ("openai", "anthropic"):
        assert _ledger(engine, p) == _truth(sim, p), p


def test_persistent_fault_fails_cleanly(
    cli: type[Cli], simulator_factory: SimulatorFactory, engine: Engine, fast_ingest: None
) -> None:
    sim = simulator_factory(seed=2, history_days=2)
    _add_keys(cli, sim)
    sim.set_fault("/v1/organization/costs", "503", count=None)
    r = cli.run("ingest", "sync", "--days", "3", "--json")
    assert r.exit_code == 1
    runs = {x["provider"]: x for x in json.loads(r.stdout)}
    assert runs["openai"]["status"] == "failed" and runs["anthropic"]["status"] == "ok"
    assert _ledger(engine, "openai")["input_tokens"] == 0  # no partial window
    status = {s["provider"]: s for s in json.loads(cli.ok("ingest", "status", "--json").stdout)}
    assert "503" in status["openai"]["last_error"] and status["openai"]["complete_through"] is None
    sim.clear_faults()
    cli.ok("ingest", "sync", "--days", "3")
    for p in ("openai", "anthropic"):
        assert _ledger(engine, p) == _truth(sim, p), p


class _InProcessTruth(Simulator):
    """Ground truth read in-process (the test's own HTTP client has no proxy or CA)."""

    def ground_truth(self, origin: str | None = None) -> dict[str, Any]:
        return self.state.ledger.ground_truth(origin)  # type: ignore[no-any-return]


def test_sync_goes_through_the_egress_proxy_to_a_tls_provider(
    cli: type[Cli],
    engine: Engine,
    fast_ingest: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """HTTPS_PROXY and METIS_UPSTREAM_CA_BUNDLE apply to provider sync as to the gateway."""
    from metis.simulator import create_app
    from metis.util.server_thread import ServerThread
    from tests.gateway.connect_proxy import ConnectProxy
    from tests.gateway.tls_certs import ca_and_server_cert

    ca, cert, key = ca_and_server_cert(tmp_path, ["provider.test"])
    app = create_app(seed=2, history_days=1)
    with (
        ServerThread(app, ssl_certfile=str(cert), ssl_keyfile=str(key)) as srv,
        ConnectProxy(hosts={"provider.test": "127.0.0.1"}) as proxy,
    ):
        sim = _InProcessTruth(srv, app)
        sim.url = f"https://provider.test:{srv.port}"  # reachable only through the proxy
        _add_keys(cli, sim)
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("METIS_UPSTREAM_CA_BUNDLE", str(ca))
        runs = json.loads(cli.ok("ingest", "sync", "--days", "2", "--json").stdout)
        assert {r["status"] for r in runs} == {"ok"}, runs
        assert {s.target for s in proxy.seen} == {f"provider.test:{srv.port}"}
        assert {s.method for s in proxy.seen} == {"CONNECT"}
        truth = {p: _truth(sim, p) for p in ("openai", "anthropic")}
        assert all(t["input_tokens"] > 0 for t in truth.values())  # there was usage to sync
    for p in ("openai", "anthropic"):
        assert _ledger(engine, p) == truth[p], p
