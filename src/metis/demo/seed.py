"""The demo's cast: workspace, provider keys, users, teams with caps, keys, tokens, rules.

Everything is created with the library functions the CLI uses, in one
transaction, so a half-seeded demo cannot exist. Provider secrets are
simulator keys generated here; they are stored encrypted and never printed.

The story the data tells:

- team ``platform`` (daily cap $25, monthly $400) is busy: it crosses the
  organisation-wide soft cap (`SOFT_CAP_USD` per team per day, a routing rule
  in ``routing.yaml``), after which its chat calls are routed to cheaper models;
- team ``research`` (daily cap $3, monthly $60) runs Claude Opus and runs into
  its hard daily cap (the gateway answers 429; the soft-cap rule does not
  downgrade Opus or o3);
- ``eval-pipeline`` is a key without user or team (embeddings and a mini model),
  with its own daily cap, as is carol's CI key;
- user ``alice`` also runs an agent whose plugin pushes usage (`metis.demo.plugin`).
"""

import os
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Connection

from metis.analytics.admin_tokens import create_token as create_admin_token
from metis.config import Settings
from metis.credentials import add_credential
from metis.identity.keys import issue_key
from metis.identity.teams import add_team
from metis.identity.users import add_user
from metis.ingest.tokens import create_token as create_ingest_token
from metis.money import to_nanousd
from metis.simulator.keys import (
    new_anthropic_admin_key,
    new_anthropic_key,
    new_openai_admin_key,
    new_openai_key,
)
from metis.workspaces import add_workspace

WORKSPACE = "demo"
SOFT_CAP_USD = Decimal(2)


@dataclass(frozen=True)
class TeamSpec:
    name: str
    daily_cap_usd: Decimal
    monthly_cap_usd: Decimal


@dataclass(frozen=True)
class UserSpec:
    alias: str
    name: str
    email: str
    team: str


@dataclass(frozen=True)
class KeySpec:
    name: str
    user: str | None
    team: str | None
    allowed_models: tuple[str, ...] | None = None
    daily_cap_usd: Decimal | None = None


TEAMS = (
    TeamSpec("platform", Decimal(25), Decimal(400)),
    TeamSpec("research", Decimal(3), Decimal(60)),
)
USERS = (
    UserSpec("alice", "Alice Liu", "alice@example.org", "platform"),
    UserSpec("bob", "Bob Martin", "bob@example.org", "platform"),
    UserSpec("carol", "Carol Diaz", "carol@example.org", "platform"),
    UserSpec("dan", "Dan Okafor", "dan@example.org", "research"),
    UserSpec("erin", "Erin Novak", "erin@example.org", "research"),
)
KEYS = (
    KeySpec("alice-laptop", "alice", "platform"),
    KeySpec("bob-ide", "bob", "platform"),
    KeySpec("carol-ci", "carol", "platform", daily_cap_usd=Decimal(5)),
    KeySpec("dan-notebook", "dan", "research"),
    KeySpec("erin-agent", "erin", "research"),
    KeySpec(
        "eval-pipeline",
        None,
        None,
        ("text-embedding-3-small", "gpt-4o-mini"),
        daily_cap_usd=Decimal(1),
    ),
)


@dataclass(frozen=True)
class DemoKey:
    """An issued gateway key (the secret is the demo's to use, shown once)."""

    name: str
    key_id: str
    secret: str
    user: str | None
    team: str | None


@dataclass
class Seeded:
    """What the seed created and the rest of the demo needs."""

    workspace_id: str
    keys: dict[str, DemoKey] = field(default_factory=dict)
    team_ids: dict[str, str] = field(default_factory=dict)
    user_ids: dict[str, str] = field(default_factory=dict)
    credential_ids: dict[str, str] = field(default_factory=dict)
    ingest_token: str = ""
    admin_token: str = ""


def routing_rules_yaml(soft_cap_usd: Decimal = SOFT_CAP_USD) -> str:
    """The demo's rules: a per-team daily soft cap on the general-purpose models.

    Past the soft cap a team's gpt-4o / gpt-4.1 calls go to gpt-4o-mini and its
    Claude Sonnet calls to Claude Haiku; the research models (Opus, o3) are
    not downgraded, so a team using them runs into its hard cap instead.
    """
    cap = format(soft_cap_usd, "f")
    shapes = (
        ("openai", "[gpt-4o, gpt-4.1]", "openai:gpt-4o-mini"),
        ("anthropic", "[claude-sonnet-4-5]", "anthropic:claude-haiku-4-5"),
    )
    rules = [
        f"- name: team-daily-soft-cap-{shape}\n"
        f"  workspace: {WORKSPACE}\n"
        f"  when:\n"
        f"    team_cost_today_exceeds_usd: {cap}\n"
        f"    model_in: {models}\n"
        f"  use: {target}\n"
        f'  reason: "team over its ${cap} daily soft cap; cheaper model"\n'
        for shape, models, target in shapes
    ]
    head = "# Written by `metis demo` (docs/routing.md).\nschema_version: 1\nrules:\n"
    return head + "".join(rules)


def write_routing_file(path: Path) -> bool:
    """Write the demo rules to ``path`` unless a file is there; True if written."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # 0600 like everything Metis writes in its home (names teams and workspaces)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(routing_rules_yaml())
    return True


def seed(conn: Connection, settings: Settings, upstream_url: str) -> Seeded:
    """Create the demo workspace and everything in it; ``upstream_url`` is the simulator."""
    ws = add_workspace(conn, WORKSPACE)
    out = Seeded(workspace_id=ws.id)
    creds = (
        ("openai", "inference", new_openai_key()),
        ("anthropic", "inference", new_anthropic_key()),
        ("openai", "usage_admin", new_openai_admin_key()),
        ("anthropic", "usage_admin", new_anthropic_admin_key()),
    )
    for provider, purpose, secret in creds:
        cred = add_credential(
            conn,
            settings,
            workspace_id=ws.id,
            provider=provider,
            purposes=[purpose],
            mode="admin" if purpose == "usage_admin" else "standard",
            secret=secret,
            base_url=upstream_url,
        )
        out.credential_ids[f"{provider}:{purpose}"] = cred.id
    for t in TEAMS:
        team = add_team(
            conn,
            t.name,
            daily_cap_nanousd=to_nanousd(t.daily_cap_usd),
            monthly_cap_nanousd=to_nanousd(t.monthly_cap_usd),
        )
        out.team_ids[t.name] = team.id
    for u in USERS:
        out.user_ids[u.alias] = add_user(conn, u.name, email=u.email, alias=u.alias).id
    for k in KEYS:
        key, secret = issue_key(
            conn,
            name=k.name,
            workspace=ws.id,
            user=k.user,
            team=k.team,
            allowed_models=k.allowed_models,
            daily_cap_nanousd=None if k.daily_cap_usd is None else to_nanousd(k.daily_cap_usd),
        )
        out.keys[k.name] = DemoKey(k.name, key.id, secret, k.user, k.team)
    _, out.ingest_token = create_ingest_token(conn, ws.id, "alice-agent")
    _, out.admin_token = create_admin_token(conn, "demo")
    return out
