"""``metis gateway``: users, teams and gateway keys (spec 003 §4).

Keys are the auth artifact of the gateway; users and teams are properties
of a key. Secrets are printed once by ``issue-key`` and never shown again.
"""

import sys
from collections.abc import Sequence

import typer

from metis.cli import resolve
from metis.cli._common import WIDE_HELP, print_json, print_table, transaction
from metis.errors import MetisError, NotFoundError
from metis.identity import keys as key_lib
from metis.identity import teams as team_lib
from metis.identity import users as user_lib
from metis.identity.records import GatewayKey, Team, User
from metis.identity.teams import KEEP
from metis.identity.validate import parse_cap_usd
from metis.money import from_nanousd, usd_json
from metis.timeutil import iso
from metis.workspaces import list_workspaces

app = typer.Typer(help="Gateway identity: users, teams and gateway keys.", no_args_is_help=True)
user_app = typer.Typer(help="Users: who a key bills to.", no_args_is_help=True)
team_app = typer.Typer(help="Teams: budget-owning groups with optional caps.", no_args_is_help=True)
key_app = typer.Typer(help="Gateway keys: change an issued key.", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(team_app, name="team")
app.add_typer(key_app, name="key")

CLEAR_WORDS = frozenset({"none", "off"})


def stdin_is_interactive() -> bool:
    """Whether a person can answer a prompt on stdin.

    The one place the CLI decides this; tests replace it (monkeypatch) to
    exercise the interactive path through a non-TTY test runner.
    """
    return sys.stdin is not None and sys.stdin.isatty()


def _confirm(question: str) -> bool:
    """Ask ``question [y/N]`` on stderr; only ``y``/``yes`` is a yes (EOF is no)."""
    typer.echo(f"{question} [y/N] ", nl=False, err=True)
    answer = sys.stdin.readline() if sys.stdin is not None else ""
    return answer.strip().lower() in ("y", "yes")


def _usd(nanos: int | None) -> str:
    if nanos is None:
        return ""
    return format(from_nanousd(nanos).normalize(), "f")


def _cap_option(value: str | None, field: str) -> int | None:
    return None if value is None else parse_cap_usd(value, field)


def _cap_change(value: str | None, field: str) -> "int | team_lib._Keep | None":
    if value is None:
        return KEEP
    if value.strip().lower() in CLEAR_WORDS:
        return None
    return parse_cap_usd(value, field)


def _table(
    title: str, columns: Sequence[str], rows: Sequence[Sequence[object]], wide: bool = False
) -> None:
    """`print_table` (cells are plain text: names are user input, not Rich markup)."""
    print_table(title, columns, rows, wide=wide)


def _mask_email(email: str | None) -> str | None:
    if email is None:
        return None
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


# ---------------------------------------------------------------- users


@user_app.command("add")
def user_add(
    name: str = typer.Option(..., "--name", help="Display name, e.g. 'Alice Liu'."),
    email: str | None = typer.Option(None, "--email", help="Optional email (kept only here)."),
    alias: str | None = typer.Option(
        None, "--alias", help="Short unique handle for --user (default: slug of the name)."
    ),
    daily_cap_usd: str | None = typer.Option(
        None, "--daily-cap-usd", help="Hard daily cap over all the user's keys, USD."
    ),
    monthly_cap_usd: str | None = typer.Option(
        None, "--monthly-cap-usd", help="Hard monthly cap over all the user's keys, USD."
    ),
) -> None:
    """Create a user, optionally with hard caps (UTC day / UTC calendar month).

    Example:

        metis gateway user add --name "Alice Liu" --email alice@example.org --alias alice
    """
    daily = _cap_option(daily_cap_usd, "--daily-cap-usd")
    monthly = _cap_option(monthly_cap_usd, "--monthly-cap-usd")
    with transaction() as conn:
        u = user_lib.add_user(
            conn,
            name,
            email=email,
            alias=alias,
            daily_cap_nanousd=daily,
            monthly_cap_nanousd=monthly,
        )
    typer.echo(f"created user {u.alias} ({u.id})")


def _user_json(u: User, show_email: bool) -> dict[str, object]:
    return {
        "id": u.id,
        "alias": u.alias,
        "display_name": u.display_name,
        "email": u.email if show_email else _mask_email(u.email),
        "daily_cap_usd": usd_json(u.daily_cap_nanousd),
        "monthly_cap_usd": usd_json(u.monthly_cap_nanousd),
        "created_at": iso(u.created_at),
        "disabled": u.disabled,
    }


@user_app.command("list")
def user_list(
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    show_email: bool = typer.Option(
        False, "--show-email", help="Show full emails (masked by default)."
    ),
    wide: bool = typer.Option(False, "--wide", help=WIDE_HELP),
) -> None:
    """List users and their caps (emails masked unless --show-email).

    Example:

        metis gateway user list --json
    """
    with transaction() as conn:
        items = user_lib.list_users(conn)
    rows = [_user_json(u, show_email) for u in items]
    if json_out:
        print_json(rows)
        return
    if not rows:
        typer.echo("no users yet: create one with `metis gateway user add --name NAME`")
        return
    _table(
        "Users",
        ["id", "alias", "name", "email", "daily cap $", "monthly cap $", "created", "disabled"],
        [
            [r["id"], r["alias"], r["display_name"], r["email"], _usd(u.daily_cap_nanousd),
             _usd(u.monthly_cap_nanousd), r["created_at"], r["disabled"]]
            for r, u in zip(rows, items, strict=True)
        ],
        wide,
    )  # fmt: skip


@user_app.command("set-cap")
def user_set_cap(
    alias: str = typer.Argument(..., help="User alias or id (usr_…)."),
    daily_cap_usd: str | None = typer.Option(
        None, "--daily-cap-usd", help="New daily cap in USD, or 'none' to remove it."
    ),
    monthly_cap_usd: str | None = typer.Option(
        None, "--monthly-cap-usd", help="New monthly cap in USD, or 'none' to remove it."
    ),
) -> None:
    """Change a user's hard caps over all their keys; takes effect on the next request.

    Spend of every key bound to the user counts (UTC day; UTC calendar month).
    At the cap the gateway answers 429 with scope user_daily / user_monthly;
    budget alerts fire at 80/95/100% like team caps.

    Example:

        metis gateway user set-cap alice --daily-cap-usd 5 --monthly-cap-usd 100
    """
    daily = _cap_change(daily_cap_usd, "--daily-cap-usd")
    monthly = _cap_change(monthly_cap_usd, "--monthly-cap-usd")
    with transaction() as conn:
        u = user_lib.set_caps(conn, alias, daily_cap_nanousd=daily, monthly_cap_nanousd=monthly)
    typer.echo(
        f"user {u.alias}: daily cap {_usd(u.daily_cap_nanousd) or 'none'}, "
        f"monthly cap {_usd(u.monthly_cap_nanousd) or 'none'}"
    )


@user_app.command("disable")
def user_disable(
    alias: str = typer.Argument(..., help="User alias, display name or id (usr_…)."),
) -> None:
    """Disable a user: every key bound to it stops authenticating (401).

    There is no re-enable in v1; issue-key refuses disabled users.

    Example:

        metis gateway user disable alice
    """
    with transaction() as conn:
        u = user_lib.disable_user(conn, resolve.user(conn, alias).id)
        n = key_lib.count_active_keys(conn, user_id=u.id)
    typer.echo(f"disabled user {u.alias} ({u.id}); {n} unrevoked key(s) now fail auth")


@user_app.command("set-email")
def user_set_email(
    alias: str = typer.Argument(..., help="User alias, display name or id (usr_…)."),
    email: str = typer.Argument(..., help="The new email."),
) -> None:
    """Set a user's email (stored only in the users table, never in events).

    Example:

        metis gateway user set-email alice alice@example.org
    """
    with transaction() as conn:
        u = user_lib.set_email(conn, resolve.user(conn, alias).id, email)
    typer.echo(f"updated email of user {u.alias} ({u.id})")


# ---------------------------------------------------------------- teams


@team_app.command("add")
def team_add(
    name: str = typer.Option(..., "--name", help="Unique team name: letters, digits, '_', '-'."),
    daily_cap_usd: str | None = typer.Option(None, "--daily-cap-usd", help="Hard daily cap, USD."),
    monthly_cap_usd: str | None = typer.Option(
        None, "--monthly-cap-usd", help="Hard monthly cap, USD."
    ),
) -> None:
    """Create a team with optional hard caps (UTC day / UTC calendar month).

    Example:

        metis gateway team add --name eng --daily-cap-usd 50 --monthly-cap-usd 1200
    """
    daily = _cap_option(daily_cap_usd, "--daily-cap-usd")
    monthly = _cap_option(monthly_cap_usd, "--monthly-cap-usd")
    with transaction() as conn:
        t = team_lib.add_team(conn, name, daily_cap_nanousd=daily, monthly_cap_nanousd=monthly)
    typer.echo(f"created team {t.name} ({t.id})")


def _team_json(t: Team) -> dict[str, object]:
    return {
        "id": t.id,
        "name": t.name,
        "daily_cap_usd": usd_json(t.daily_cap_nanousd),
        "monthly_cap_usd": usd_json(t.monthly_cap_nanousd),
        "created_at": iso(t.created_at),
        "disabled": t.disabled,
    }


@team_app.command("list")
def team_list(
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    wide: bool = typer.Option(False, "--wide", help=WIDE_HELP),
) -> None:
    """List teams and their caps.

    Example:

        metis gateway team list --json
    """
    with transaction() as conn:
        items = team_lib.list_teams(conn)
    if json_out:
        print_json([_team_json(t) for t in items])
        return
    if not items:
        typer.echo("no teams yet: create one with `metis gateway team add --name NAME`")
        return
    _table(
        "Teams",
        ["id", "name", "daily cap $", "monthly cap $", "created", "disabled"],
        [
            [
                t.id,
                t.name,
                _usd(t.daily_cap_nanousd),
                _usd(t.monthly_cap_nanousd),
                iso(t.created_at),
                t.disabled,
            ]
            for t in items
        ],
        wide,
    )


@team_app.command("set-cap")
def team_set_cap(
    name: str = typer.Argument(..., help="Team name or id (team_…)."),
    daily_cap_usd: str | None = typer.Option(
        None, "--daily-cap-usd", help="New daily cap in USD, or 'none' to remove it."
    ),
    monthly_cap_usd: str | None = typer.Option(
        None, "--monthly-cap-usd", help="New monthly cap in USD, or 'none' to remove it."
    ),
) -> None:
    """Change a team's caps; takes effect on the gateway's next request.

    Example:

        metis gateway team set-cap eng --daily-cap-usd 75 --monthly-cap-usd none
    """
    daily = _cap_change(daily_cap_usd, "--daily-cap-usd")
    monthly = _cap_change(monthly_cap_usd, "--monthly-cap-usd")
    with transaction() as conn:
        t = team_lib.set_caps(
            conn, resolve.team(conn, name).id, daily_cap_nanousd=daily, monthly_cap_nanousd=monthly
        )
    typer.echo(
        f"team {t.name}: daily cap {_usd(t.daily_cap_nanousd) or 'none'}, "
        f"monthly cap {_usd(t.monthly_cap_nanousd) or 'none'}"
    )


@team_app.command("disable")
def team_disable(name: str = typer.Argument(..., help="Team name or id (team_…).")) -> None:
    """Disable a team: every key bound to it stops authenticating (401).

    There is no re-enable in v1; issue-key refuses disabled teams.

    Example:

        metis gateway team disable eng
    """
    with transaction() as conn:
        t = team_lib.disable_team(conn, resolve.team(conn, name).id)
        n = key_lib.count_active_keys(conn, team_id=t.id)
    typer.echo(f"disabled team {t.name} ({t.id}); {n} unrevoked key(s) now fail auth")


# ---------------------------------------------------------------- keys


def _split_models(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [m.strip() for v in values for m in v.split(",") if m.strip()] or [""]


def _confirm_creations(missing: list[tuple[str, str]], yes: bool, create_missing: bool) -> None:
    """Decide, before anything is written, whether each unknown user/team may be created.

    Only ``--create-missing``, or a ``y`` typed at the prompt on a terminal,
    creates one. ``--yes`` never does: it means "ask nothing", so with it an
    unknown name (a typo, often) is an error and nothing is written.
    """
    for kind, ref in missing:
        if create_missing:
            continue
        add = f"metis gateway {kind} add " + (
            f"--name {ref}" if kind == "team" else f"--alias {ref}"
        )
        if yes:
            raise NotFoundError(
                f"unknown {kind} {ref!r}; --yes does not create it: create it with `{add} ...` "
                "or pass --create-missing; no key issued"
            )
        if not stdin_is_interactive():
            raise NotFoundError(
                f"unknown {kind} {ref!r} and no terminal to confirm creating it: pass "
                f"--create-missing, or create it first with `{add} ...`"
            )
        if not _confirm(f"Create {kind} '{ref}'?"):
            raise MetisError(f"aborted: {kind} {ref!r} not created, no key issued")


@app.command("issue-key")
def issue_key(
    name: str = typer.Option(..., "--name", help="A label for the key, e.g. alice-claude-code."),
    workspace: str = typer.Option(..., "--workspace", help="Workspace name, id or path."),
    user: str | None = typer.Option(
        None, "--user", help="User the key bills to: alias, display name or id."
    ),
    team: str | None = typer.Option(None, "--team", help="Team the key bills to: name or id."),
    allow_models: list[str] | None = typer.Option(  # noqa: B008
        None,
        "--allow-models",
        metavar="MODELS",
        help="Allowed model (repeat, or comma-separate); default: all.",
    ),
    daily_cap_usd: str | None = typer.Option(
        None, "--daily-cap-usd", help="Hard daily cap for this key, USD."
    ),
    create_missing: bool = typer.Option(
        False,
        "--create-missing",
        help="Create the --user/--team if it does not exist yet (printed when it happens).",
    ),
    yes: bool = typer.Option(
        False, "--yes", "-y", help="Never prompt (an unknown --user/--team is then an error)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print JSON (includes the secret)."),
) -> None:
    """Issue a gateway key and print its secret once (only its SHA-256 is stored).

    An unknown --user/--team is created only with --create-missing, or on a
    terminal after a [y/N] prompt; --yes never creates one (it only means
    "do not ask"), so a typo cannot make a new team. A disabled user or team
    is refused. Whatever is created is printed with its id.

    Example:

        metis gateway issue-key --name alice-cc --workspace acme --user alice --team eng
    """
    models = _split_models(allow_models)
    cap = _cap_option(daily_cap_usd, "--daily-cap-usd")
    missing: list[tuple[str, str]] = []
    user_ref, team_ref = user, team
    # Everything is checked before asking, and nothing is written before the answers.
    with transaction() as conn:
        ws = resolve.workspace(conn, workspace)
        if user is not None:
            found_user = resolve.find_user(conn, user)
            # Refuses a disabled user; for an unknown one, checks the alias it would get.
            key_lib.check_user_ref(conn, found_user.id if found_user else user, True)
            if found_user is None:
                missing.append(("user", user))
            else:
                user_ref = found_user.id
        if team is not None:
            found_team = resolve.find_team(conn, team)
            key_lib.check_team_ref(conn, found_team.id if found_team else team, True)
            if found_team is None:
                missing.append(("team", team))
            else:
                team_ref = found_team.id
    _confirm_creations(missing, yes, create_missing)
    with transaction() as conn:
        key, secret = key_lib.issue_key(
            conn,
            name=name,
            workspace=ws.id,
            user=user_ref,
            team=team_ref,
            allowed_models=models,
            daily_cap_nanousd=cap,
            create_user=("user", user) in missing,
            create_team=("team", team) in missing,
        )
    created = {"user": key.user_id, "team": key.team_id}
    if json_out:
        print_json(
            {**_key_json(key), "token": secret, "created": {k: created[k] for k, _ in missing}}
        )
        return
    for kind, ref in missing:
        typer.echo(f"created {kind} {ref} ({created[kind]})")
    typer.echo(f"issued gateway key {key.id} ({key.name})")
    typer.echo("key (shown once, store it now):")
    typer.echo(secret)


@app.command("revoke-key")
def revoke_key(
    key_id: str = typer.Argument(..., help="The key: id (key_…), name or display prefix."),
    reason: str | None = typer.Option(None, "--reason", help="Why (kept in the audit event)."),
) -> None:
    """Revoke a gateway key: requests using it get 401 from the next request on.

    A name re-used by a revoked key means the live one; a name two live keys
    share is refused with both ids listed.

    Example:

        metis gateway revoke-key alice-laptop --reason "laptop lost"
    """
    with transaction() as conn:
        key, changed = key_lib.revoke_key(conn, resolve.key(conn, key_id).id, reason=reason)
    if changed:
        typer.echo(f"revoked gateway key {key.id} ({key.name})")
    else:
        revoked_at = iso(key.revoked_at) if key.revoked_at else "?"
        typer.echo(f"gateway key {key.id} was already revoked at {revoked_at}")


def _key_json(k: GatewayKey) -> dict[str, object]:
    return {
        "id": k.id,
        "name": k.name,
        "prefix": k.display_prefix,
        "workspace_id": k.workspace_id,
        "user_id": k.user_id,
        "team_id": k.team_id,
        "allowed_models": list(k.allowed_models) if k.allowed_models is not None else None,
        "daily_cap_usd": usd_json(k.daily_cap_nanousd),
        "created_at": iso(k.created_at),
        "revoked_at": iso(k.revoked_at) if k.revoked_at else None,
        "revoke_reason": k.revoke_reason,
    }


@app.command("list-keys")
def list_keys(
    workspace: str | None = typer.Option(
        None, "--workspace", help="Only this workspace (name, id or path)."
    ),
    active: bool = typer.Option(False, "--active", help="Hide revoked keys."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    wide: bool = typer.Option(False, "--wide", help=WIDE_HELP),
) -> None:
    """List gateway keys (id, display prefix, bindings; never secrets).

    Ids are printed whole: when the table is wider than the terminal each key
    is printed as a block of lines instead (--wide keeps the table).

    Example:

        metis gateway list-keys --workspace acme --json
    """
    with transaction() as conn:
        ws_id = resolve.workspace(conn, workspace).id if workspace is not None else None
        items = key_lib.list_keys(conn, workspace=ws_id, include_revoked=not active)
        aliases = {u.id: u.alias for u in user_lib.list_users(conn)}
        team_names = {t.id: t.name for t in team_lib.list_teams(conn)}
        ws_names = {w.id: w.name for w in list_workspaces(conn)}
    if json_out:
        print_json(
            [
                {
                    **_key_json(k),
                    "workspace_name": ws_names.get(k.workspace_id),
                    "user_alias": aliases.get(k.user_id) if k.user_id else None,
                    "team_name": team_names.get(k.team_id) if k.team_id else None,
                }
                for k in items
            ]
        )
        return
    if not items:
        typer.echo("no gateway keys: issue one with `metis gateway issue-key`")
        return
    _table(
        "Gateway keys",
        ["id", "name", "prefix", "workspace", "user", "team", "models", "daily cap $", "revoked"],
        [
            [
                k.id,
                k.name,
                k.display_prefix + "…",
                ws_names.get(k.workspace_id, k.workspace_id),
                aliases.get(k.user_id, "") if k.user_id else "",
                team_names.get(k.team_id, "") if k.team_id else "",
                ",".join(k.allowed_models) if k.allowed_models is not None else "*",
                _usd(k.daily_cap_nanousd),
                iso(k.revoked_at) if k.revoked_at else "",
            ]
            for k in items
        ],
        wide,
    )


def _binding(value: str | None) -> "str | team_lib._Keep | None":
    if value is None:
        return KEEP
    return None if value.strip().lower() in CLEAR_WORDS else value


@key_app.command("set")
def key_set(
    key_id: str = typer.Argument(..., help="The key: id (key_…), name or display prefix."),
    user: str | None = typer.Option(
        None, "--user", help="User alias or id to bind the key to, or 'none' to unbind."
    ),
    team: str | None = typer.Option(
        None, "--team", help="Team name or id to bind the key to, or 'none' to unbind."
    ),
) -> None:
    """Re-bind an issued key to a user and/or team (audited as gateway.key_updated).

    Takes effect on the gateway's next request; usage recorded before keeps
    its old binding, so reports over a window spanning the change carry
    partial_coverage. The user/team must exist (create them first).

    Example:

        metis gateway key set alice-laptop --user alice --team eng
    """
    with transaction() as conn:
        kid = resolve.key(conn, key_id).id
        key, changed = key_lib.rebind_key(conn, kid, user=_binding(user), team=_binding(team))
        aliases = {u.id: u.alias for u in user_lib.list_users(conn)}
        team_names = {t.id: t.name for t in team_lib.list_teams(conn)}
    shown_user = aliases.get(key.user_id, key.user_id) if key.user_id else "none"
    shown_team = team_names.get(key.team_id, key.team_id) if key.team_id else "none"
    verb = "bound" if changed else "already bound"
    typer.echo(f"gateway key {key.id} ({key.name}) {verb} to user {shown_user}, team {shown_team}")
