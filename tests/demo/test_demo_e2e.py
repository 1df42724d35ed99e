"""``metis demo`` end to end: a real subprocess, its pages and API, a clean stop.

The session's `demo_server` (tests/plugins/demo.py) is started once and
stopped with SIGINT at the end of the session, asserting exit code 0 and no
traceback. Here: what it serves, a SIGTERM stop of a second demo with a
throwaway home, and the refusal to seed a database twice.
"""

import os
import re
import signal
import socket
import subprocess
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tests.plugins.demo import (
    METIS,
    DemoProcess,
    assert_clean_exit,
    demo_database_url,
    demo_env,
    start_demo,
)

pytestmark = pytest.mark.slow
# Signal handling, the temp home and the port check do not depend on the database:
# run those once (SQLite run); the session demo and the refusal run on both backends.
sqlite_run_only = pytest.mark.skipif(
    bool(os.environ.get("METIS_TEST_DATABASE_URL")),
    reason="backend-independent; covered by the SQLite run",
)


def test_prints_what_a_newcomer_needs(demo_server: DemoProcess) -> None:
    assert demo_server.dashboard_url.startswith("http://127.0.0.1:")
    assert demo_server.dashboard_url.endswith("/ui")
    assert demo_server.admin_token.startswith("mta_")
    assert demo_server.fields["API"] == demo_server.url
    assert demo_server.fields["Gateway"] == demo_server.url + "/v1"
    assert demo_server.gateway_key.startswith("gw_")
    out = "".join(demo_server.stdout) + "".join(demo_server.stderr)
    # Provider secrets are never printed or logged (the simulator's key prefixes).
    assert "sk-" not in out


def test_prints_the_line_that_points_the_cli_at_its_data(demo_server: DemoProcess) -> None:
    out = "".join(demo_server.stdout)
    (line,) = [x.strip() for x in demo_server.stdout if x.strip().startswith("export METIS_HOME=")]
    home = line.removeprefix("export METIS_HOME=")
    assert Path(home) == demo_server.home
    env = demo_env(Path(home), demo_server.database_url)  # as a fresh shell after the export
    if demo_server.database_url:
        assert "export METIS_DATABASE_URL=" in out
    r = subprocess.run(
        [*METIS, "report", "cost", "--group-by", "team"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "platform" in r.stdout and "research" in r.stdout
    r = subprocess.run(
        [*METIS, "report", "forecast", "--wide"], env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert r.returncode == 0 and "platform" in r.stdout, r.stderr


def test_api_shows_the_seeded_story(demo_server: DemoProcess) -> None:
    r = demo_server.api("/analytics/by_team")
    assert r.status_code == 200, r.text
    teams = {t["team_name"]: t for t in r.json()["data"]}
    assert Decimal(str(teams["platform"]["cost_usd"])) > 2  # past the $2 soft cap
    research = teams["research"]
    assert Decimal(str(research["daily_cap_usd"])) == 3
    assert Decimal(str(research["cost_usd"])) >= Decimal("2.4")  # ran into its cap
    routing = demo_server.api("/analytics/routing").json()["data"]
    assert routing["hard_failures_by_reason"]["quota_exceeded"] >= 3
    assert set(routing["rule_hits"]) >= {"team-daily-soft-cap-openai"}
    sources = demo_server.api("/analytics/cost", group_by="source").json()["data"]
    # provider − attributed shows as the unattributed rows (the history that bypassed Metis)
    assert {s["source"] for s in sources} == {"gateway", "hermes_plugin", "unattributed"}
    ingest = demo_server.api("/analytics/ingest").json()["data"]
    assert sum(1 for c in ingest if c["healthy"] and c["runs"] >= 1) == 2
    recon = demo_server.api("/analytics/reconciliation")
    assert recon.status_code == 200, recon.text
    cells = recon.json()["cells"]
    assert cells and all(c["covered_by_provider"] for c in cells)
    assert recon.json()["totals"]["unattributed"]["cost_nanousd"] > 0  # history bypassed Metis
    assert sum(c["sources"]["plugin_duplicate"]["rows"] for c in cells) == 2
    for c in cells:  # measures a provider's report lacks never drift or read as 0 calls
        assert c["drift"]["request_count"] == 0 and c["drift"]["reasoning_tokens"] == 0, c
        seen = c["sources"]["gateway"]["request_count"] + c["sources"]["plugin"]["request_count"]
        if c["provider"] == "anthropic":
            assert c["reconciled"]["request_count"] == seen, c
    assert any(c["provider"] == "anthropic" and c["reconciled"]["request_count"] for c in cells)
    assert all(s["reasoning_tokens"] >= 0 and s["call_count"] >= 0 for s in sources)
    assert httpx.get(demo_server.url + "/openapi.json", timeout=10).status_code == 200
    # Admin routes refuse a gateway key.
    bad = httpx.get(
        demo_server.url + "/analytics/by_team",
        headers={"authorization": f"Bearer {demo_server.gateway_key}"},
        timeout=10,
    )
    assert bad.status_code == 401


def test_gateway_answers_with_the_printed_key(demo_server: DemoProcess) -> None:
    h = {"authorization": f"Bearer {demo_server.gateway_key}"}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.post(demo_server.url + "/v1/chat/completions", json=body, headers=h, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["prompt_tokens"] > 0 and r.headers["x-metis-request-id"]


def test_dashboard_pages_show_the_demo(demo_server: DemoProcess) -> None:
    """Log in with the printed admin token (real form, CSRF and cookies) and open every page."""
    with httpx.Client(base_url=demo_server.url, timeout=30) as ui:
        first = ui.get("/ui")
        assert first.status_code in (302, 303) and "/ui/login" in first.headers["location"]
        form = ui.get("/ui/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert form.status_code == 200 and csrf, form.text
        login = ui.post("/ui/login", data={"csrf": csrf.group(1), "token": demo_server.admin_token})
        assert login.status_code == 303, login.text
        pages = {
            "/ui": ["platform", "research"],
            "/ui/teams": ["platform", "research"],
            "/ui/keys": ["alice-laptop", "eval-pipeline"],
            "/ui/reconciliation": ["claude-opus-4-1", "gpt-4o"],
            "/ui/ingestion": ["openai", "anthropic"],
        }
        for path, expected in pages.items():
            r = ui.get(path)
            assert r.status_code == 200, (path, r.status_code, r.text[:500])
            missing = [text for text in expected if text not in r.text]
            assert not missing, (path, missing)


@sqlite_run_only
def test_sigterm_stops_cleanly_and_removes_the_temp_home(tmp_path: Path) -> None:
    with demo_database_url() as url:
        env = demo_env(tmp_path, url)
        del env["METIS_HOME"]  # no home given: the demo makes a temp one
        env["TMPDIR"] = str(tmp_path)
        demo = start_demo(tmp_path, env, "--history-days", "2")
        try:
            _check_and_stop(demo, tmp_path)
        finally:
            demo.stop(signal.SIGKILL)


def _check_and_stop(demo: DemoProcess, tmp_path: Path) -> None:
    home = Path(next(line for line in demo.stdout if line.startswith("Home: ")).split()[1])
    assert home.parent == tmp_path and home.is_dir()
    r = httpx.get(demo.url + "/v1/models", headers={"authorization": f"Bearer {demo.gateway_key}"})
    assert r.status_code == 200
    assert_clean_exit(demo, demo.stop(signal.SIGTERM))
    assert not home.exists()


def test_refuses_a_database_that_has_data(demo_server: DemoProcess) -> None:
    env = demo_env(demo_server.home, None)
    if demo_server.database_url:
        env["METIS_DATABASE_URL"] = demo_server.database_url
    r = subprocess.run(
        [*METIS, "demo", "--port", "0"], env=env, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 1
    assert r.stderr.startswith(
        "error: this database already has data (1 workspaces, 5 users, 2 teams): "
        "the demo only seeds an empty database"
    ), r.stderr
    assert "Traceback" not in r.stderr


@sqlite_run_only
def test_port_in_use_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = demo_env(tmp_path, None)
        del env["METIS_HOME"]
        env["TMPDIR"] = str(tmp_path)
        r = subprocess.run(
            [*METIS, "demo", "--port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert r.returncode == 1
    assert (
        r.stderr == f"error: cannot listen on 127.0.0.1:{port} (Address already in use): "
        "pick another --port (0 = any free port)\n"
    )
    assert list(tmp_path.iterdir()) == []  # nothing was created


@sqlite_run_only
def test_interrupt_while_seeding_cleans_up(tmp_path: Path) -> None:
    env = demo_env(tmp_path, None)
    del env["METIS_HOME"]
    env["TMPDIR"] = str(tmp_path)
    proc = subprocess.Popen(
        [*METIS, "demo", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    try:
        for line in proc.stdout:  # interrupt in the middle of the set-up
            if line.startswith("Sending gateway traffic"):
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # pragma: no cover - only when the demo hangs
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "Interrupted before the demo was ready; stopped and cleaned up." in err
    assert "Traceback" not in err and "Press Ctrl-C" not in out
    assert list(tmp_path.iterdir()) == []  # the temp home is gone
