"""Secrets canary: known secrets go in everywhere, and come out nowhere.

Every kind of secret Metis handles gets a known canary value: provider keys
(inference and usage-admin, OpenAI and Anthropic, stored encrypted or by
``env:``/``file:`` reference), gateway keys, ingest tokens, admin tokens
(issued and ``METIS_ADMIN_TOKEN``), the master key, the cron secret and the
alert sinks' secrets. Then every CLI command runs (the list is read from the
CLI itself, so a new command fails `test_every_cli_command_is_covered` until
it is added here), the server answers every route with good and bad
credentials, the gateway forwards calls and upstream errors, syncs and
alerts run, and exports are written. The canaries are then searched for in:

- every CLI invocation's stdout and stderr, and its argv (secrets never
  travel on the command line);
- every log record at DEBUG level (stdlib logging, including SQLAlchemy's SQL
  and parameter logs, uvicorn's access log, and the structlog JSON lines of
  ingestion), plus everything written to the process's stdout/stderr;
- every HTTP answer (body and headers) of every route, for each credential;
- every column of every row of every table, and the SQLite files themselves;
- every export (files and HTTP) and every alert delivered to the sinks.

Zero hits are allowed, except one: a secret Metis issues (gateway key, ingest
token, admin token) is printed once, by the command that issued it; that one
output is exempt for that one secret, and it must appear there. Provider keys
show only as their last four characters.
"""

import base64
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from metis.secrets.master_key import generate_key_text
from metis.simulator.bedrock import new_keypair
from metis.simulator.gemini import new_key as new_gemini_key
from metis.simulator.keys import (
    new_anthropic_admin_key,
    new_anthropic_key,
    new_openai_key,
)
from metis.util.server_thread import ServerThread, free_port
from tests.alerts.receiver import Receiver
from tests.conftest import BACKEND, Cli, CliResult, invoke
from tests.ingest.test_push_cli import _state_db
from tests.plugins.simulator import Simulator
from tests.security.canary import Scanner
from tests.security.test_auth_matrix import BODIES, enumerate_routes

# Commands this test does not run, and why (everything else must run).
NOT_RUN = {
    "simulator serve": "the provider stand-in, not Metis: it is handed provider keys by design "
    "(this test runs the same simulator in-process as the upstream)",
    "demo": "runs in test_demo_prints_only_its_own_throwaway_secrets (one demo per session)",
}
PROVIDER_WINDOW = 7  # provider keys: last four shown, so any 7-character run is a leak
# Request bodies are not logged or stored: the gateway's prompts carry this marker.
PROMPT = "prompt-canary-" + os.urandom(12).hex()


def leaf_commands() -> set[str]:
    """Every leaf command of the ``metis`` CLI, e.g. ``gateway team set-cap``."""
    import typer

    from metis.cli.main import app

    out: set[str] = set()

    def walk(cmd: Any, ctx: Any, prefix: list[str]) -> None:
        if hasattr(cmd, "list_commands"):  # a group (possibly lazily loaded)
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                walk(sub, type(ctx)(sub, parent=ctx, info_name=name), [*prefix, name])
        else:
            out.add(" ".join(prefix))

    root = typer.main.get_command(app)
    walk(root, type_ctx(root), [])
    return out


def type_ctx(cmd: Any) -> Any:
    """A click context for ``cmd`` (what ``list_commands`` of a lazy group wants)."""
    return cmd.make_context("metis", [], resilient_parsing=True)


@dataclass
class Run:
    """Runs CLI commands, remembers which, and collects their output for the scan."""

    scanner: Scanner
    leaves: set[str]
    ran: set[str] = field(default_factory=set)
    results: list[tuple[list[str], CliResult, tuple[str, ...]]] = field(default_factory=list)

    def __call__(
        self,
        *args: str,
        input: str | None = None,
        code: int | None = 0,
        prints_once: str | None = None,
    ) -> CliResult:
        """Run ``metis ARGS``; ``prints_once`` names the canary this output may (must) show."""
        argv = list(args)
        self.scanner.text(f"argv of metis {' '.join(argv[:3])}", " ".join(argv))
        r = invoke(argv, input=input)
        if code is not None:
            assert r.exit_code == code, f"metis {' '.join(argv)} -> {r.exit_code}: {r.output}"
        for n in range(len(argv), 0, -1):
            if " ".join(argv[:n]) in self.leaves:
                self.ran.add(" ".join(argv[:n]))
                break
        allow = (prints_once,) if prints_once else ()
        self.results.append((argv, r, allow))
        return r

    def scan(self) -> None:
        for argv, r, allow in self.results:
            self.scanner.text(f"output of metis {' '.join(argv)}", r.output, allow=allow)


class _Collect(logging.Handler):
    """Every record, formatted with its traceback, at DEBUG."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception as exc:  # a record that cannot format is itself worth seeing
            self.lines.append(f"unformattable record {record.name}: {exc!r}")


@pytest.fixture
def debug_logs() -> Iterator[_Collect]:
    root = logging.getLogger()
    h = _Collect()
    old = root.level
    root.addHandler(h)
    root.setLevel(logging.DEBUG)
    try:
        yield h
    finally:
        root.removeHandler(h)
        root.setLevel(old)


@dataclass
class Env:
    scanner: Scanner
    home: Path
    receiver: Receiver
    receiver_url: str


@pytest.fixture
def canary_env(
    metis_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Env]:
    """METIS_* secrets set to canaries, sinks pointed at a live receiver."""
    sc = Scanner()
    master = sc.add("master key", generate_key_text())
    sc.add("master key (raw bytes as text)", base64.b64decode(master).decode("latin-1"), 6)
    monkeypatch.setenv("METIS_MASTER_KEY", master)
    monkeypatch.setenv("METIS_ADMIN_TOKEN", sc.add("admin env token", "adm-" + _rand()))
    monkeypatch.setenv("METIS_CRON_SECRET", sc.add("cron secret", "cron-" + _rand()))
    monkeypatch.setenv("METIS_LOG_LEVEL", "DEBUG")
    if BACKEND == "postgresql":  # the test server trusts loopback, so any password works
        from sqlalchemy.engine import make_url

        password = sc.add("database password", "dbpw-" + _rand())
        url = make_url(metis_env["METIS_DATABASE_URL"]).set(password=password)
        monkeypatch.setenv("METIS_DATABASE_URL", url.render_as_string(hide_password=False))
    monkeypatch.setenv("METIS_INGEST_SCHEDULER", "false")
    # Every route is called with every wrong credential from one address: throttling
    # (tests/security/test_auth_throttle.py) would turn the later calls into 429s.
    monkeypatch.setenv("METIS_AUTH_FAIL_LIMIT", "0")
    monkeypatch.setenv("METIS_INGEST_RETRY_BASE_SECONDS", "0.01")
    monkeypatch.setenv("METIS_INGEST_MAX_ATTEMPTS", "2")
    home = Path(metis_env["METIS_HOME"])
    (home / "alerts.yaml").write_text(
        "schema_version: 1\ndelivery:\n  retry_base_seconds: 0.05\n  retry_max_seconds: 0.2\n"
        "  poll_seconds: 0.05\n  timeout_seconds: 2\n"
    )
    rec = Receiver()
    with ServerThread(rec.app()) as srv:
        hook_secret = sc.add("webhook signing secret", "whsec-" + _rand())
        slack_token = sc.add("slack webhook token", _rand())
        monkeypatch.setenv("METIS_ALERT_WEBHOOK_URL", srv.url + "/hook")
        monkeypatch.setenv("METIS_ALERT_WEBHOOK_SECRET", hook_secret)
        monkeypatch.setenv(
            "METIS_ALERT_SLACK_WEBHOOK_URL", f"{srv.url}/services/T0/B0/{slack_token}"
        )
        yield Env(sc, home, rec, srv.url)


def _rand() -> str:
    import secrets

    return secrets.token_urlsafe(32)


def _last(text: str, pattern: str) -> str:
    m = re.findall(pattern, text)
    assert m, (pattern, text)
    return str(m[-1])


def test_every_cli_command_is_covered() -> None:
    """The flows below name every command; a new command must be added (or to NOT_RUN)."""
    covered = set(FLOW_COMMANDS) | set(NOT_RUN)
    assert leaf_commands() - covered == set(), "CLI commands the canary test does not run"
    assert covered - leaf_commands() == set(), "commands listed here that no longer exist"


# Every command `test_canaries_appear_nowhere` runs (it asserts it ran each one).
FLOW_COMMANDS = (
    "init",
    "db upgrade",
    "db status",
    "db rebuild-rollups",
    "db prune",
    "db partitions",
    "workspace add",
    "workspace list",
    "provider-key add",
    "provider-key list",
    "provider-key test",
    "provider-key remove",
    "secrets rotate-master-key",
    "gateway user add",
    "gateway user list",
    "gateway user set-email",
    "gateway user set-cap",
    "gateway user disable",
    "gateway team add",
    "gateway team list",
    "gateway team set-cap",
    "gateway team disable",
    "gateway issue-key",
    "gateway list-keys",
    "gateway revoke-key",
    "gateway key set",
    "ingest token create",
    "ingest token list",
    "ingest token revoke",
    "ingest token set",
    "ingest push",
    "ingest hermes-import",
    "ingest sync",
    "ingest backfill",
    "ingest status",
    "admin token create",
    "admin token list",
    "admin token revoke",
    "routing check",
    "routing explain",
    "prices check",
    "report cost",
    "report forecast",
    "export usage",
    "export audit",
    "export focus",
    "alerts test",
    "alerts status",
    "alerts run",
    "serve",
)


@pytest.mark.slow
def test_canaries_appear_nowhere(
    canary_env: Env,
    simulator: Simulator,
    engine: Engine,
    debug_logs: _Collect,
    capfd: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sc, home = canary_env.scanner, canary_env.home
    run = Run(sc, leaf_commands())
    sim = simulator
    oai = sc.add("openai inference key", sim.openai_key, PROVIDER_WINDOW)
    ant = sc.add("anthropic inference key", sim.anthropic_key, PROVIDER_WINDOW)
    oai_admin = sc.add("openai admin key", sim.openai_admin_key, PROVIDER_WINDOW)
    ant_admin = sc.add("anthropic admin key", sim.anthropic_admin_key, PROVIDER_WINDOW)
    env_ref = sc.add("provider key by env ref", new_openai_key(), PROVIDER_WINDOW)
    file_ref = sc.add("provider key by file ref", new_anthropic_key(), PROVIDER_WINDOW)
    bad_admin = sc.add("rejected admin key", new_openai_key(), PROVIDER_WINDOW)
    removed = sc.add("removed provider key", new_anthropic_admin_key(), PROVIDER_WINDOW)
    aws_key_id, aws_secret = new_keypair()  # the key id is not secret (it is in options)
    aws = sc.add("bedrock secret access key", aws_secret, PROVIDER_WINDOW)
    gem = sc.add("gemini api key", new_gemini_key(), PROVIDER_WINDOW)
    monkeypatch.setenv("CANARY_OPENAI_KEY", env_ref)
    key_file = tmp_path / "anthropic.key"
    key_file.write_text(file_ref + "\n")
    key_file.chmod(0o600)

    # ---- setup commands
    run("init")
    run("db", "upgrade")
    run("db", "status")
    run("workspace", "add", "acme")
    run("workspace", "add", "refs")
    run("workspace", "list", "--json")
    pk = ["provider-key", "add", "--base-url", sim.url]
    ids = {}
    for ws, prov, purpose, secret in [
        ("acme", "openai", "inference", oai),
        ("acme", "anthropic", "inference", ant),
        ("acme", "openai", "usage_admin", oai_admin),
        ("acme", "anthropic", "usage_admin", ant_admin),
        ("refs", "anthropic", "usage_admin", removed),
    ]:
        r = run(
            *pk, "--workspace", ws, "--provider", prov, "--purpose", purpose, input=secret + "\n"
        )
        ids[(ws, prov, purpose)] = _last(r.stdout, r"cred_[0-9A-Z]+")
    run(*pk, "--workspace", "acme", "--provider", "bedrock", "--purpose", "inference",
        "--region", "us-east-1", "--aws-access-key-id", aws_key_id, input=aws + "\n")  # fmt: skip
    run(*pk, "--workspace", "acme", "--provider", "gemini", "--purpose", "inference",
        input=gem + "\n")  # fmt: skip
    run(*pk, "--workspace", "refs", "--provider", "openai", "--purpose", "inference",
        "--secret-ref", "env:CANARY_OPENAI_KEY")  # fmt: skip
    run(*pk, "--workspace", "refs", "--provider", "anthropic", "--purpose", "inference",
        "--secret-ref", f"file:{key_file}")  # fmt: skip
    r = run(*pk, "--workspace", "refs", "--provider", "openai", "--purpose", "usage_admin",
            input=bad_admin + "\n")  # fmt: skip
    bad_cred = _last(r.stdout, r"cred_[0-9A-Z]+")
    listed = run("provider-key", "list").stdout + run("provider-key", "list", "--json").stdout
    for secret in (oai, ant, oai_admin, ant_admin, env_ref, file_ref):
        assert secret[-4:] in listed, "provider keys are listed by their last four characters"
    run("provider-key", "test", ids[("acme", "openai", "usage_admin")])
    run("provider-key", "test", bad_cred, code=1)  # a standard key where an admin key belongs
    run("provider-key", "remove", ids[("refs", "anthropic", "usage_admin")])
    run("secrets", "rotate-master-key")
    sc.add("rotated master key", (home / "master.key.next").read_text().strip())

    # ---- identities and issued secrets
    run("gateway", "user", "add", "--name", "Alice Liu", "--email", "alice@example.org")
    run("gateway", "user", "add", "--name", "Bob", "--email", "bob@example.org")
    run("gateway", "user", "set-email", "bob", "bob2@example.org")
    run("gateway", "user", "set-cap", "bob", "--daily-cap-usd", "5", "--monthly-cap-usd", "none")
    run("gateway", "user", "list", "--json", "--show-email")
    run("gateway", "user", "list")  # masked
    run("gateway", "team", "add", "--name", "eng", "--daily-cap-usd", "50")
    run("gateway", "team", "add", "--name", "ops")
    run("gateway", "team", "set-cap", "eng", "--daily-cap-usd", "75", "--monthly-cap-usd", "none")
    run("gateway", "team", "list", "--json")
    issued: dict[str, str] = {}
    for name, ws, extra in [("alice-key", "acme", ["--user", "alice-liu", "--team", "eng"]),
                            ("bob-key", "acme", ["--user", "bob", "--team", "ops"]),
                            ("refs-key", "refs", []),  # upstream keys by env:/file: reference
                            ("doomed-key", "acme", [])]:  # fmt: skip
        canary = f"gateway key {name}"
        r = run("gateway", "issue-key", "--name", name, "--workspace", ws, *extra,
                "--create-missing", "--json", prints_once=canary)  # fmt: skip
        doc = json.loads(r.stdout)
        secret = doc["token"]
        sc.add(canary, secret)
        assert r.output.count(secret) == 1
        issued[name] = doc["id"]
        issued[name + ":secret"] = secret
    run("gateway", "key", "set", issued["doomed-key"], "--team", "none")
    run("gateway", "revoke-key", issued["doomed-key"], "--reason", "canary test")
    run("gateway", "list-keys", "--json")
    run("gateway", "list-keys", "--workspace", "acme", "--active")
    r = run("ingest", "token", "create", "--workspace", "acme", "--name", "laptop",
            prints_once="ingest token")  # fmt: skip
    itok = sc.add("ingest token", _last(r.stdout, r"mit_[A-Za-z0-9_-]+"))
    r = run("ingest", "token", "create", "--workspace", "acme", "--name", "old", "--json",
            prints_once="revoked ingest token")  # fmt: skip
    old_doc = json.loads(r.stdout)
    sc.add("revoked ingest token", _last(r.stdout, r"mit_[A-Za-z0-9_-]+"))
    run("ingest", "token", "set", old_doc.get("id") or _last(r.stdout, r"itok_[0-9A-Z]+"),
        "--via-gateway")  # fmt: skip
    run("ingest", "token", "revoke", old_doc.get("id") or _last(r.stdout, r"itok_[0-9A-Z]+"))
    run("ingest", "token", "list", "--json")
    r = run("admin", "token", "create", "--name", "dash", prints_once="admin token")
    adm = sc.add("admin token", _last(r.stdout, r"mta_[A-Za-z0-9_-]+"))
    r = run("admin", "token", "create", "--name", "old", prints_once="revoked admin token")
    sc.add("revoked admin token", _last(r.stdout, r"mta_[A-Za-z0-9_-]+"))
    run("admin", "token", "revoke", "old")
    run("admin", "token", "list", "--json")

    # ---- plugin usage, provider sync
    usage = tmp_path / "usage.jsonl"
    item = {"time": "2026-11-01T10:00:00Z", "provider": "openai", "model": "gpt-4o-mini",
            "input_tokens": 100, "output_tokens": 10, "cost_usd": 0.000123}  # fmt: skip
    usage.write_text(
        json.dumps({**item, "idempotency_key": "k1"}) + "\n{broken\n"
        + json.dumps({**item, "idempotency_key": "k2", "input_tokens": -1}) + "\n"
    )  # fmt: skip
    run("ingest", "push", str(usage), "--workspace", "acme", code=1)
    state = tmp_path / "state.db"
    _state_db(state)
    run("ingest", "hermes-import", "--state-db", str(state), "--workspace", "acme")
    run("ingest", "sync", "--days", "2", "--workspace", "acme")
    run("ingest", "sync", "--days", "1", "--credential", bad_cred, code=1)  # 401 upstream
    run("ingest", "backfill", "--days", "3", "--json", code=None)
    run("ingest", "status", "--json")

    # ---- the server: every route, with every credential, plus gateway traffic
    from metis.server import create_app

    srv = ServerThread(create_app(), log_level="debug", access_log=True).start()
    try:
        _exercise_server(srv.url, sc, issued, itok, adm, sim)
    finally:
        srv.stop()
    _serve_subprocess(run, sc, issued["alice-key:secret"])

    # ---- reports, routing, exports, alerts, maintenance
    routing = home / "routing.yaml"
    routing.write_text(
        "schema_version: 1\nrules:\n  - name: soft\n    when: {team_cost_today_exceeds_usd: 0}\n"
        "    use: anthropic:claude-haiku-4-5\n"
    )
    run("routing", "check", "--json")
    run("routing", "explain", "--key", issued["alice-key"], "--model", "gpt-4o")
    run("prices", "check", "--json")
    run("report", "cost", "--group-by", "team", "--json")
    run("report", "cost", "--group-by", "user")
    run("report", "forecast", "--by", "user")
    run("report", "forecast", "--by", "team", "--json")
    exports = tmp_path / "exports"
    exports.mkdir()
    run("export", "usage", "--format", "csv", "--output", str(exports / "usage.csv"))
    run("export", "usage", "--format", "jsonl", "--group-by", "day,team")
    run("export", "audit", "--output", str(exports / "audit.jsonl"))
    run("export", "audit", "--with-names")
    run("export", "focus", "--output", str(exports / "focus.csv"))  # the parquet's rows, plain
    run("export", "focus", "--output", str(exports / "focus.parquet"))
    run("export", "focus", "--version", "1.0")
    run("alerts", "test")
    run("alerts", "run")
    run("alerts", "status", "--json")
    run("db", "rebuild-rollups")
    run("db", "prune", "--retention-days", "3650", "--dry-run", "--json")
    run("db", "partitions", "--create-ahead", "--json")
    run("gateway", "user", "disable", "bob")
    run("gateway", "team", "disable", "ops")

    # ---- the scan
    assert run.ran >= set(FLOW_COMMANDS), f"not run: {set(FLOW_COMMANDS) - run.ran}"
    run.scan()
    sc.text("stdlib logging at DEBUG", "\n".join(debug_logs.lines))
    captured = capfd.readouterr()
    for name, out in (("process stdout", captured.out), ("process stderr", captured.err)):
        # uvicorn's access log is shared by every server in this process: the receiver's
        # own lines (it is the Slack side, its URL path is the token) are not Metis's output
        lines = [ln for ln in out.splitlines() if not _RECEIVER_LINE.search(ln)]
        sc.text(name, "\n".join(lines))
    sc.database(engine)
    sc.files(exports)
    for post in canary_env.receiver.posts:
        # the Slack token is the receiver's own URL path: only the body and headers count
        sc.text(f"alert delivered to {post.path}", post.body.decode() + repr(post.headers))
    if BACKEND == "sqlite":
        sc.files(home)  # the database with its WAL, the key files excepted below
    # privacy by default: emails live in the users table only, request bodies nowhere
    # (DESIGN, Security posture)
    pii = Scanner()
    for email in ("alice@example.org", "bob@example.org", "bob2@example.org"):
        pii.add(f"email {email}", email, window=len(email))
    pii.add("prompt (request body)", PROMPT, window=len(PROMPT))
    pii.database(engine)
    pii.text("stdlib logging at DEBUG", "\n".join(debug_logs.lines))
    pii.text("process output", captured.out + captured.err)
    for argv, r, _ in run.results:
        shows_email = argv[:3] in (["gateway", "user", "add"], ["gateway", "user", "set-email"])
        if not shows_email and "--show-email" not in argv and "--with-names" not in argv:
            pii.text(f"output of metis {' '.join(argv)}", r.output)
    pii.files(exports)
    with engine.connect() as conn:
        from metis.db.tables import events

        pii.text("events table", repr(conn.execute(events.select()).all()))
    # the users table is where emails live
    pii.hits = [h for h in pii.hits if not (h.startswith("email") and " in db users." in h)]
    assert pii.hits == [], "emails or prompts found:\n" + "\n".join(pii.hits)
    assert len(debug_logs.lines) > 100, "the DEBUG log capture caught nothing"
    assert canary_env.receiver.posts, "no alert was delivered: the sink canaries went unused"
    assert sc.scanned > 300
    hits = [h for h in sc.hits if not _key_file_hit(h, home)]
    assert hits == [], "canary secrets found:\n" + "\n".join(hits)


_RECEIVER_LINE = re.compile(r'"POST /(services/T0/B0/|hook)[^ ]* HTTP/1.1" \d+')


def _key_file_hit(hit: str, home: Path) -> bool:
    """master.key / master.key.next hold the master key: that is where it lives."""
    return bool(re.match(r"(rotated )?master key( \(raw bytes as text\))? in file ", hit)) and (
        f"{home}/master.key" in hit
    )


def _exercise_server(
    url: str,
    sc: Scanner,
    issued: dict[str, str],
    itok: str,
    adm: str,
    sim: Simulator,
) -> None:
    """Every route with every credential, real gateway traffic, a UI session."""
    from metis.server import create_app

    live = issued["alice-key:secret"]

    def value(name: str) -> str:
        return next(c.value for c in sc.canaries if c.name == name)

    creds: dict[str, dict[str, str]] = {
        "none": {},
        "gateway key": {"Authorization": f"Bearer {live}"},
        "gateway key x-api-key": {"x-api-key": live},
        "revoked gateway key": {"Authorization": f"Bearer {issued['doomed-key:secret']}"},
        "ingest token": {"Authorization": f"Bearer {itok}"},
        "admin token": {"Authorization": f"Bearer {adm}"},
        "admin env token": {"Authorization": f"Bearer {os.environ['METIS_ADMIN_TOKEN']}"},
        "cron secret": {"Authorization": f"Bearer {os.environ['METIS_CRON_SECRET']}"},
        "revoked ingest token": {"Authorization": f"Bearer {value('revoked ingest token')}"},
        "revoked admin token": {"Authorization": f"Bearer {value('revoked admin token')}"},
        # a made-up secret is a canary too: a 401 must not echo what it was given
        "wrong secret": {"Authorization": f"Bearer {sc.add('wrong secret', 'gw_' + _rand())}"},
        "wrong secret x-api-key": {"x-api-key": sc.add("wrong x-api-key", "mit_" + _rand())},
        "admin token as basic": {"Authorization": f"Basic {adm}"},
    }
    routes = sorted(enumerate_routes(create_app()))
    with httpx.Client(base_url=url, timeout=60) as http:

        def scan(where: str, r: httpx.Response) -> httpx.Response:
            sc.text(where, f"{r.status_code} {r.headers!r}\n{r.text}")
            return r

        for method, path in routes:
            target = path.replace("{user_id}", "usr_nope").replace("{key_id}", "key_nope")
            target = re.sub(r"\{[a-z_]+\}", "x_nope", target)
            if method == "MOUNT":
                target += "/metis.css"
            for kind, headers in creds.items():
                http.cookies.clear()
                h = {"anthropic-version": "2023-06-01", **headers}
                if method == "POST":
                    r = http.post(target, json=BODIES.get(path, {}), headers=h)
                else:
                    r = http.get(target, headers=h)
                scan(f"{method} {path} with {kind}", r)
        gw = {"Authorization": f"Bearer {live}"}
        chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}]}
        msgs = {"model": "claude-haiku-4-5", "max_tokens": 20,
                "messages": [{"role": "user", "content": PROMPT}]}  # fmt: skip
        for path, body in [
            ("/v1/chat/completions", chat),
            ("/v1/chat/completions", {**chat, "stream": True}),
            ("/v1/messages", msgs),
            ("/v1/messages", {**msgs, "stream": True}),
            ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "hi"}),
            ("/v1/chat/completions", {**chat, "model": "no-such-model-xyz"}),
        ]:
            scan(f"gateway {path}", http.post(path, json=body, headers=gw))
        scan("gateway bad json", http.post("/v1/chat/completions", content=b"{", headers=gw))
        # other families: Bedrock (SigV4 with the stored secret, never sent) and Gemini
        for path, body in [
            ("/v1/messages", {**msgs, "model": "bedrock/anthropic.claude-haiku-4-5-20251001-v1:0"}),
            ("/v1/chat/completions", {**chat, "model": "bedrock/amazon.nova-pro-v1:0"}),
            ("/v1beta/models/gemini-2.5-flash:generateContent",
             {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]}),
        ]:  # fmt: skip
            r = http.post(path, json=body, headers=gw)
            assert r.status_code == 200, r.text
            scan(f"gateway {path} ({body.get('model', 'gemini')})", r)
        refs = {"Authorization": f"Bearer {issued['refs-key:secret']}"}
        for path, body in [("/v1/chat/completions", chat), ("/v1/messages", msgs)]:
            r = http.post(path, json=body, headers=refs)
            assert r.status_code == 200, r.text  # the env:/file: referenced keys were used
            scan(f"gateway {path} via referenced keys", r)
        # upstream failures: the provider rejects the key, then errors out
        for fault in ("429", "500"):
            sim.set_fault("/v1/chat/completions", fault, count=1)
            scan(
                f"gateway upstream {fault}",
                http.post("/v1/chat/completions", json=chat, headers=gw),
            )
        scan("models", http.get("/v1/models", headers=gw))
        ing = {"Authorization": f"Bearer {itok}"}
        good = {"idempotency_key": "h1", "time": "2026-11-01T10:00:00Z", "provider": "openai",
                "model": "gpt-4o-mini", "input_tokens": 5, "output_tokens": 1}  # fmt: skip
        scan("push", http.post("/v1/ingest/usage", json={"items": [good, {"x": 1}]}, headers=ing))
        cron = {"Authorization": f"Bearer {os.environ['METIS_CRON_SECRET']}"}
        scan("cron", http.post("/cron/usage", json={"days": 1}, headers=cron))
        admin = {"Authorization": f"Bearer {adm}"}
        for path in ["/export/usage?format=csv", "/export/usage?format=jsonl",
                     "/export/audit", "/export/focus", "/export/focus?format=parquet",
                     "/analytics/cost?group_by=user", "/analytics/ingest",
                     "/analytics/by_key", "/metrics", "/openapi.json"]:  # fmt: skip
            scan(f"admin GET {path}", http.get(path, headers=admin))
        # the dashboard: log in with the admin token, read every page (and its CSV), issue a key
        http.cookies.clear()
        form = http.get("/ui/login")
        nonce = _last(form.text, r'name="csrf" value="([^"]+)"')
        bad = http.post("/ui/login", data={"csrf": nonce, "token": adm + "x"})
        scan("ui login with a wrong token", bad)
        form = http.get("/ui/login")
        nonce = _last(form.text, r'name="csrf" value="([^"]+)"')
        scan("ui login", http.post("/ui/login", data={"csrf": nonce, "token": adm}))
        for page in ("/ui", "/ui/teams", "/ui/keys", "/ui/reconciliation", "/ui/ingestion"):
            r = scan(f"ui {page}", http.get(page))
            for table in set(re.findall(r"csv=([a-z_]+)", r.text)):
                scan(f"ui {page} csv {table}", http.get(page, params={"csv": table}))
        keys_page = http.get("/ui/keys")
        csrf = _last(keys_page.text, r'name="csrf" value="([^"]+)"')
        r = http.post("/ui/keys", data={"csrf": csrf, "name": "ui-key", "workspace": "acme"})
        ui_secret = _last(r.text, r"gw_[A-Za-z0-9_-]+")
        sc.add("gateway key issued in the dashboard", ui_secret)
        sc.text("ui key issued page", r.text, allow=("gateway key issued in the dashboard",))
        assert r.text.count(ui_secret) >= 1
        scan("ui keys after issue", http.get("/ui/keys"))


def _serve_subprocess(run: Run, sc: Scanner, gw_secret: str) -> None:
    """``metis serve`` as a real process at DEBUG: its whole output is scanned too."""
    port = free_port()
    cmd = [sys.executable, "-c", "from metis.cli.main import run; run()", "serve",
           "--port", str(port), "--log-level", "debug"]  # fmt: skip
    run.ran.add("serve")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90  # a loaded 2-core CI machine starts Python slowly
        while True:
            try:
                httpx.get(url + "/openapi.json", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
                time.sleep(0.1)
        with httpx.Client(base_url=url, timeout=30) as http:
            chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
            for headers in ({"Authorization": f"Bearer {gw_secret}"},
                            {"Authorization": "Bearer gw_nope"}, {}):  # fmt: skip
                r = http.post("/v1/chat/completions", json=chat, headers=headers)
                sc.text("serve subprocess answer", r.text + repr(r.headers))
            sc.text("serve admin 401", http.get("/analytics/cost").text)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode in (0, -signal.SIGTERM), (
        err
    )  # uvicorn re-raises SIGTERM after a clean shutdown
    sc.text("metis serve stdout", out)
    sc.text("metis serve stderr", err)


def test_demo_prints_only_its_own_throwaway_secrets(demo_server: Any) -> None:
    """``metis demo``: its provider keys, master key and secrets show nowhere but by design.

    The demo makes its own secrets; this reads them back (the master key from
    its home, the provider keys by decrypting its credentials, the admin token
    and gateway key from the two lines that print them) and scans the demo's
    whole output, its database and files, and its HTTP answers.
    """
    from pydantic import SecretStr

    from metis.config import Settings
    from metis.credentials import list_credentials, reveal_secret
    from metis.db.engine import make_engine

    demo = demo_server
    home: Path = demo.home
    sc = Scanner()
    master = (home / "master.key").read_text().strip()
    sc.add("demo master key", master)
    url = demo.database_url or f"sqlite:///{home / 'metis.db'}"
    settings = Settings(home=home, database_url=url, master_key=SecretStr(master))
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            creds = list_credentials(conn)
            assert creds, "the demo stored no provider keys"
            for c in creds:
                sc.add(f"demo provider key {c.id}", reveal_secret(conn, settings, c.id), 7)
        sc.add("demo admin token", demo.admin_token)
        sc.add("demo gateway key", demo.gateway_key)
        with httpx.Client(base_url=demo.url, timeout=60) as http:
            admin = {"Authorization": f"Bearer {demo.admin_token}"}
            paths = ["/admin/whoami", "/analytics/cost?group_by=user", "/analytics/by_key",
                     "/analytics/ingest", "/analytics/reconciliation", "/export/usage",
                     "/export/audit", "/metrics", "/openapi.json", "/ui/login"]  # fmt: skip
            for path in paths:
                r = http.get(path, headers=admin)
                assert r.status_code == 200, (path, r.status_code)
                sc.text(f"demo GET {path}", r.text + repr(r.headers))
            gw = {"Authorization": f"Bearer {demo.gateway_key}"}
            chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
            for headers in (gw, {"Authorization": "Bearer gw_nope"}, {}):
                r = http.post("/v1/chat/completions", json=chat, headers=headers)
                sc.text("demo gateway answer", r.text + repr(r.headers))
        sc.database(engine)
    finally:
        engine.dispose()
    stdout = "".join(demo.stdout)
    for name, value in (("demo admin token", demo.admin_token),
                        ("demo gateway key", demo.gateway_key)):  # fmt: skip
        assert stdout.count(value) == 1, f"{name} is printed once"
    sc.text("demo stdout", stdout, allow=("demo admin token", "demo gateway key"))
    sc.text("demo stderr", "".join(demo.stderr))
    if demo.database_url is None:
        for f in sorted(home.rglob("*")):
            if f.is_file() and f.name != "master.key":
                sc.blob(f"demo file {f.name}", f.read_bytes())
    assert sc.hits == [], "canary secrets found:\n" + "\n".join(sc.hits)


def test_database_password_stays_out_of_errors(
    cli: type[Cli], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the database unreachable, no command or server start prints its password."""
    password = "dbpw-" + _rand()
    port = free_port()  # nothing listens there
    monkeypatch.setenv("METIS_DATABASE_URL", f"postgresql://metis:{password}@127.0.0.1:{port}/x")
    for args in (["db", "status"], ["db", "upgrade"], ["init"], ["workspace", "list"],
                 ["ingest", "sync"], ["report", "cost"], ["alerts", "run"]):  # fmt: skip
        r = cli.run(*args)
        assert r.exit_code != 0 and "database unavailable" in r.stderr, (args, r.output)
        assert password not in r.output and password[5:13] not in r.output, args
