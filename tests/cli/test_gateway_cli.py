"""``metis gateway``: the spec 003 §4 CLI end to end against the real database."""

import json
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select

from metis.cli import gateway as gateway_cli
from metis.db.tables import events, gateway_keys, teams, users
from metis.identity.auth import AuthError, resolve
from metis.identity.teams import add_team
from metis.identity.users import add_user
from metis.identity.validate import email_sha256
from metis.ledger import versions
from tests.conftest import Cli
from tests.identity.helpers import dump, events_of


@pytest.fixture
def acme(cli: type[Cli]) -> type[Cli]:
    cli.ok("workspace", "add", "acme", "--path", "/srv/acme")
    return cli


@pytest.fixture
def tty(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Treat stdin as a terminal (the CliRunner's stdin is a pipe)."""
    monkeypatch.setattr(gateway_cli, "stdin_is_interactive", lambda: True)
    yield


def _token(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("gw_"))


def _one_line_error(r: object, needle: str) -> None:
    assert r.exit_code != 0  # type: ignore[attr-defined]
    err = r.stderr.strip()  # type: ignore[attr-defined]
    assert "\n" not in err and err.startswith("error: ") and needle in err, err
    assert "Traceback" not in r.output  # type: ignore[attr-defined]


def test_user_add_then_issue_key_end_to_end(acme: type[Cli], engine: Engine) -> None:
    acme.ok(
        "gateway", "user", "add", "--name", "Alice Liu", "--email", "alice@org", "--alias", "alice"
    )
    r = acme.ok(
        "gateway", "issue-key", "--name", "alice-cc", "--workspace", "acme", "--user", "alice"
    )
    token = _token(r.stdout)
    assert len(token) == 46 and "Create user" not in r.output
    with engine.connect() as conn:
        principal, snap = resolve(conn, token)
        uid = conn.execute(select(users.c.id).where(users.c.alias == "alice")).scalar_one()
    assert principal.user_id == uid and principal.team_id is None
    assert principal.workspace_path == "/srv/acme" and snap.name == "alice-cc"
    # The secret is shown once: never by list-keys, and only its hash is stored.
    listing = acme.ok("gateway", "list-keys", "--json")
    assert token not in listing.output and token[:10] in listing.stdout
    (row,) = json.loads(listing.stdout)
    assert row["user_alias"] == "alice" and row["user_id"] == uid and row["revoked_at"] is None
    assert token not in repr(dump(engine))


def test_issue_key_with_user_and_team_fires_one_key_issued(acme: type[Cli], engine: Engine) -> None:
    acme.ok("gateway", "user", "add", "--name", "alice")
    acme.ok("gateway", "team", "add", "--name", "eng", "--daily-cap-usd", "50")
    r = acme.ok(
        "gateway", "issue-key", "--name", "alice-claude-code", "--workspace", "/srv/acme",
        "--user", "alice", "--team", "eng", "--allow-models", "gpt-4o,gpt-4o-mini",
        "--allow-models", "claude-sonnet-4-5", "--daily-cap-usd", "0.25", "--json",
    )  # fmt: skip
    out = json.loads(r.stdout)
    (ev,) = events_of(engine, "gateway.key_issued")
    with engine.connect() as conn:
        uid = conn.execute(select(users.c.id)).scalar_one()
        tid = conn.execute(select(teams.c.id)).scalar_one()
    assert ev["payload"] == {
        "key_id": out["id"],
        "name": "alice-claude-code",
        "workspace_path": "/srv/acme",
        "user_id": uid,
        "team_id": tid,
        "allowed_models": ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5"],
        "daily_cap_usd": "0.250000000",
        "issued_at": out["created_at"],
    }
    assert out["token"].startswith("gw_") and out["token"] not in json.dumps(ev["payload"])
    assert out["daily_cap_usd"] == 0.25  # JSON number; exact Decimal on the wire
    assert '"daily_cap_usd":0.250000000' in r.stdout


def test_key_without_user_or_team(acme: type[Cli], engine: Engine) -> None:
    token = _token(acme.ok("gateway", "issue-key", "--name", "ci", "--workspace", "acme").stdout)
    with engine.connect() as conn:
        principal, _ = resolve(conn, token)
    assert (principal.user_id, principal.team_id) == (None, None)
    assert principal.gateway_key_id is not None


def test_prompt_yes_creates_user_and_team(acme: type[Cli], engine: Engine, tty: None) -> None:
    r = acme.ok(
        "gateway", "issue-key", "--name", "k", "--workspace", "acme",
        "--user", "alice", "--team", "eng", input="y\ny\n",
    )  # fmt: skip
    assert "Create user 'alice'? [y/N]" in r.stderr and "Create team 'eng'? [y/N]" in r.stderr
    with engine.connect() as conn:
        u = conn.execute(select(users)).mappings().one()
        t = conn.execute(select(teams)).mappings().one()
        principal, _ = resolve(conn, _token(r.stdout))
    assert (u["alias"], u["display_name"], u["email"]) == ("alice", "alice", None)
    assert (t["name"], t["daily_cap_nanousd"], t["monthly_cap_nanousd"]) == ("eng", None, None)
    assert (principal.user_id, principal.team_id) == (u["id"], t["id"])
    assert len(events_of(engine, "gateway.key_issued")) == 1


@pytest.mark.parametrize("answers", ["n\n", "\n", "yes please\n", "", "y\nn\n", "Y\nnope\n"])
def test_prompt_anything_but_y_aborts_and_writes_nothing(
    acme: type[Cli], engine: Engine, tty: None, answers: str
) -> None:
    before = dump(engine)
    r = acme.run(
        "gateway", "issue-key", "--name", "k", "--workspace", "acme",
        "--user", "alice", "--team", "eng", input=answers,
    )  # fmt: skip
    assert r.exit_code == 1 and "aborted" in r.stderr and "gw_" not in r.stdout
    assert dump(engine) == before


def test_no_terminal_and_no_yes_aborts_with_clear_message(acme: type[Cli], engine: Engine) -> None:
    before = dump(engine)
    r = acme.run("gateway", "issue-key", "--name", "k", "--workspace", "acme", "--user", "bob",
                 input="y\n")  # fmt: skip
    _one_line_error(
        r, "unknown user 'bob' and no terminal to confirm creating it: pass --create-missing"
    )
    assert "Create user" not in r.output
    assert dump(engine) == before


@pytest.mark.parametrize("interactive", [False, True])
def test_yes_without_create_missing_refuses_an_unknown_team(
    acme: type[Cli], engine: Engine, monkeypatch: pytest.MonkeyPatch, interactive: bool
) -> None:
    # A typo in --team must not make a team, whether or not a terminal could have asked.
    monkeypatch.setattr(gateway_cli, "stdin_is_interactive", lambda: interactive)
    acme.ok("gateway", "team", "add", "--name", "eng")
    before = dump(engine)
    r = acme.run("gateway", "issue-key", "--name", "k", "--workspace", "acme",
                 "--team", "nope", "--yes", input="y\n")  # fmt: skip
    _one_line_error(r, "unknown team 'nope'; --yes does not create it")
    assert "--create-missing" in r.stderr and "Create" not in r.output
    assert "gw_" not in r.stdout
    assert dump(engine) == before


def test_create_missing_creates_without_asking_and_says_what(
    acme: type[Cli], engine: Engine
) -> None:
    r = acme.ok("gateway", "issue-key", "--name", "k", "--workspace", "acme", "--user", "bob",
                "--team", "ops", "--create-missing", "--yes")  # fmt: skip
    with engine.connect() as conn:
        principal = resolve(conn, _token(r.stdout))[0]
    assert "Create" not in r.output
    assert f"created user bob ({principal.user_id})" in r.stdout
    assert f"created team ops ({principal.team_id})" in r.stdout
    assert principal.user_id is not None and principal.team_id is not None
    # JSON says the same, and a known user/team is never reported as created
    out = json.loads(
        acme.ok("gateway", "issue-key", "--name", "k2", "--workspace", "acme", "--user", "bob",
                "--team", "qa", "--create-missing", "--json").stdout
    )  # fmt: skip
    assert set(out["created"]) == {"team"} and out["team_id"] == out["created"]["team"]


def test_known_user_is_not_prompted(acme: type[Cli], engine: Engine, tty: None) -> None:
    acme.ok("gateway", "user", "add", "--name", "Bob", "--alias", "bob")
    r = acme.ok("gateway", "issue-key", "--name", "k", "--workspace", "acme", "--user", "bob",
                input="n\n")  # fmt: skip
    assert "Create" not in r.output


def test_revoked_and_disabled_team_keys_fail_auth(acme: type[Cli], engine: Engine) -> None:
    k1 = json.loads(
        acme.ok("gateway", "issue-key", "--name", "a", "--workspace", "acme", "--json").stdout
    )
    r = acme.ok("gateway", "revoke-key", k1["id"], "--reason", "rotated")
    assert "revoked gateway key" in r.stdout
    again = acme.ok("gateway", "revoke-key", k1["id"])
    assert "already revoked" in again.stdout
    (ev,) = events_of(engine, "gateway.key_revoked")
    assert ev["payload"]["key_id"] == k1["id"] and ev["payload"]["reason"] == "rotated"
    k2 = _token(acme.ok("gateway", "issue-key", "--name", "b", "--workspace", "acme",
                        "--team", "eng", "--create-missing").stdout)  # fmt: skip
    acme.ok("gateway", "team", "disable", "eng")
    with engine.connect() as conn:
        with pytest.raises(AuthError, match="revoked"):
            resolve(conn, k1["token"])
        with pytest.raises(AuthError, match="team disabled"):
            resolve(conn, k2)
    listed = json.loads(acme.ok("gateway", "list-keys", "--json").stdout)
    assert [k["revoke_reason"] for k in listed] == ["rotated", None]
    active = json.loads(acme.ok("gateway", "list-keys", "--json", "--active").stdout)
    assert [k["name"] for k in active] == ["b"]


def test_disabled_user_fails_auth_and_issue_key_does_not_reenable(
    acme: type[Cli], engine: Engine, tty: None
) -> None:
    acme.ok("gateway", "user", "add", "--name", "alice")
    token = _token(acme.ok("gateway", "issue-key", "--name", "a", "--workspace", "acme",
                           "--user", "alice").stdout)  # fmt: skip
    r = acme.ok("gateway", "user", "disable", "alice")
    assert "1 unrevoked key(s) now fail auth" in r.stdout
    with engine.connect() as conn, pytest.raises(AuthError, match="user disabled"):
        resolve(conn, token)
    acme.ok("gateway", "team", "add", "--name", "eng")
    acme.ok("gateway", "team", "disable", "eng")
    before = dump(engine)
    for flags in (["--user", "alice"], ["--team", "eng"]):
        for extra in ([], ["--yes"]):
            r = acme.run("gateway", "issue-key", "--name", "b", "--workspace", "acme",
                         *flags, *extra, input="y\n")  # fmt: skip
            _one_line_error(r, "is disabled")
            assert "Create" not in r.output
    assert dump(engine) == before
    users_out = json.loads(acme.ok("gateway", "user", "list", "--json").stdout)
    assert [u["disabled"] for u in users_out] == [True]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["user", "add", "--name", "Alice 2", "--alias", "alice"], "already exists"),
        (["user", "add", "--name", "Alice"], "already exists"),  # slug 'alice' taken
        (["user", "add", "--name", "Carol", "--email", "carol-at-org"], "invalid email"),
        (["user", "add", "--name", "Carol", "--email", "carol@"], "invalid email"),
        (["user", "set-email", "alice", "not an email"], "invalid email"),
        (["user", "set-email", "nobody", "n@org"], "unknown user 'nobody'"),
        (["user", "disable", "nobody"], "unknown user"),
        (["team", "add", "--name", "eng"], "already exists"),
        (["team", "add", "--name", "ops", "--daily-cap-usd", "-1"], "must not be negative"),
        (["team", "add", "--name", "ops", "--monthly-cap-usd", "-0.5"], "must not be negative"),
        (["team", "add", "--name", "ops", "--daily-cap-usd", "ten"], "not a decimal"),
        (["team", "add", "--name", "bad name"], "invalid team name"),
        (["team", "set-cap", "nope", "--daily-cap-usd", "5"], "unknown team 'nope'"),
        (["team", "set-cap", "eng", "--daily-cap-usd", "-5"], "must not be negative"),
        (["team", "set-cap", "eng"], "nothing to change"),
        (["team", "disable", "nope"], "unknown team"),
        (["issue-key", "--name", "k", "--workspace", "nope"], "unknown workspace"),
        (["issue-key", "--name", "k", "--workspace", "acme", "--daily-cap-usd", "-1"], "negative"),
        (
            [
                "issue-key",
                "--name",
                "k",
                "--workspace",
                "acme",
                "--user",
                "a b",
                "--create-missing",
            ],
            "alias",
        ),
        (["issue-key", "--name", "k", "--workspace", "acme", "--allow-models", ","], "model"),
        (["revoke-key", "key_nope"], "unknown gateway key"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    acme: type[Cli], engine: Engine, args: list[str], needle: str
) -> None:
    # Seeded through the library (the CLI paths for these are tested above) to keep it fast.
    with engine.begin() as conn:
        add_user(conn, "Alice", email="alice@org")
        add_team(conn, "eng", daily_cap_nanousd=10_000_000_000)
    before = dump(engine)
    r = acme.run("gateway", *args)
    _one_line_error(r, needle)
    assert "alice@org" not in r.output
    assert dump(engine) == before


def test_team_caps_set_and_clear(acme: type[Cli], engine: Engine) -> None:
    acme.ok("gateway", "team", "add", "--name", "eng", "--daily-cap-usd", "50",
            "--monthly-cap-usd", "1200.123456789")  # fmt: skip
    with engine.connect() as conn:
        v = versions.read(conn, "identity")
    r = acme.ok("gateway", "team", "set-cap", "eng", "--daily-cap-usd", "75")
    assert "daily cap 75" in r.stdout and "monthly cap 1200.123456789" in r.stdout
    acme.ok("gateway", "team", "set-cap", "eng", "--monthly-cap-usd", "none")
    with engine.connect() as conn:
        row = conn.execute(select(teams)).mappings().one()
        assert versions.read(conn, "identity") == v + 2
    assert (row["daily_cap_nanousd"], row["monthly_cap_nanousd"]) == (75_000_000_000, None)
    (t,) = json.loads(acme.ok("gateway", "team", "list", "--json").stdout)
    assert t["daily_cap_usd"] == 75 and t["monthly_cap_usd"] is None
    assert "eng" in acme.ok("gateway", "team", "list").stdout


def test_user_caps_set_and_clear(
    acme: type[Cli], engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 18 #7: ``metis gateway user add/set-cap`` for user_daily / user_monthly."""
    monkeypatch.setenv("COLUMNS", "200")  # a wide terminal: one table row per line
    acme.ok("gateway", "user", "add", "--name", "Alice", "--alias", "alice",
            "--daily-cap-usd", "5")  # fmt: skip
    with engine.connect() as conn:
        v = versions.read(conn, "identity")
    r = acme.ok("gateway", "user", "set-cap", "alice", "--monthly-cap-usd", "100.000000001")
    assert "daily cap 5, monthly cap 100.000000001" in r.stdout
    acme.ok("gateway", "user", "set-cap", "alice", "--daily-cap-usd", "off")
    with engine.connect() as conn:
        row = conn.execute(select(users)).mappings().one()
        assert versions.read(conn, "identity") == v + 2
    assert (row["daily_cap_nanousd"], row["monthly_cap_nanousd"]) == (None, 100_000_000_001)
    (u,) = json.loads(acme.ok("gateway", "user", "list", "--json").stdout)
    assert u["daily_cap_usd"] is None and str(u["monthly_cap_usd"]) == "100.000000001"
    assert "100.000000001" in acme.ok("gateway", "user", "list").stdout
    _one_line_error(acme.run("gateway", "user", "set-cap", "alice"), "nothing to change")
    _one_line_error(
        acme.run("gateway", "user", "set-cap", "alice", "--daily-cap-usd", "-1"), "daily"
    )
    _one_line_error(acme.run("gateway", "user", "set-cap", "bob", "--daily-cap-usd", "1"), "bob")


def test_pii_never_reaches_the_events_table(acme: type[Cli], engine: Engine, tty: None) -> None:
    email = "alice.liu@example.org"
    acme.ok("gateway", "user", "add", "--name", "Alice Liu", "--email", email, "--alias", "alice")
    acme.ok("gateway", "user", "add", "--name", "Bob", "--email", "bob@org")
    keys = []
    for user in ("alice", "bob", "carol"):
        keys.append(json.loads(acme.ok("gateway", "issue-key", "--name", f"{user}-k",
                                       "--workspace", "acme", "--user", user, "--team", "eng",
                                       "--json", input="y\ny\n").stdout))  # fmt: skip
    acme.ok("gateway", "user", "set-email", "carol", "carol@corp.example")
    acme.ok("gateway", "revoke-key", keys[0]["id"], "--reason", "rotation")
    with engine.connect() as conn:
        rows = conn.execute(select(events)).mappings().all()
    assert len(rows) == 4  # three issued, one revoked
    dumped = repr([dict(r) for r in rows])
    assert "@" not in dumped
    for e in (email, "bob@org", "carol@corp.example"):
        assert email_sha256(e) not in dumped
    for k in keys:
        assert k["token"] not in dumped
    # ...while the users table does hold them (the only place email lives).
    with engine.connect() as conn:
        stored = conn.execute(select(users.c.email_sha256)).scalars().all()
    assert email_sha256(email) in stored


def test_user_list_masks_emails_unless_asked(acme: type[Cli]) -> None:
    acme.ok("gateway", "user", "add", "--name", "Alice Liu", "--email", "alice@example.org")
    masked = acme.ok("gateway", "user", "list", "--json")
    (u,) = json.loads(masked.stdout)
    assert u["alias"] == "alice-liu" and u["email"] == "a***@example.org"
    assert "alice@example.org" not in acme.ok("gateway", "user", "list").stdout
    full = json.loads(acme.ok("gateway", "user", "list", "--json", "--show-email").stdout)
    assert full[0]["email"] == "alice@example.org"


def test_empty_lists(cli: type[Cli]) -> None:
    assert cli.ok("gateway", "user", "list", "--json").stdout.strip() == "[]"
    assert cli.ok("gateway", "team", "list", "--json").stdout.strip() == "[]"
    assert cli.ok("gateway", "list-keys", "--json").stdout.strip() == "[]"
    assert "no gateway keys" in cli.ok("gateway", "list-keys").stdout


def test_help_has_examples(cli: type[Cli]) -> None:
    for cmd in (["issue-key"], ["revoke-key"], ["list-keys"], ["user", "add"], ["team", "set-cap"]):
        assert "Example" in cli.ok("gateway", *cmd, "--help").stdout


def test_issue_key_secret_only_in_db_as_hash(acme: type[Cli], engine: Engine) -> None:
    token = _token(acme.ok("gateway", "issue-key", "--name", "k", "--workspace", "acme").stdout)
    with engine.connect() as conn:
        row = conn.execute(select(gateway_keys)).mappings().one()
    assert row["display_prefix"] == token[:10] and token not in repr(dict(row))


def test_names_are_printed_literally_not_as_markup(acme: type[Cli]) -> None:
    r = acme.ok("gateway", "issue-key", "--name", "[red]k[/red]", "--workspace", "acme")
    assert "([red]k[/red])" in r.stdout
    # (list-keys escapes its cells too, but a narrow table wraps them, so check the JSON)
    assert json.loads(acme.ok("gateway", "list-keys", "--json").stdout)[0]["name"] == "[red]k[/red]"
