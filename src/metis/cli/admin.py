"""``metis admin``: admin tokens for the analytics API, dashboard and cron trigger."""

import typer

from metis.analytics import admin_tokens
from metis.cli._common import console, print_json, print_table, transaction
from metis.timeutil import iso

app = typer.Typer(help="Admin access: tokens for the admin/analytics API.", no_args_is_help=True)
token_app = typer.Typer(help="Create, list and revoke admin tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")


@token_app.command("create")
def create(
    name: str = typer.Option(..., "--name", help="A label for the token (who or what uses it)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Create an admin token and print its secret once (it is stored only as a hash).

    Example:

        metis admin token create --name dashboard
    """
    with transaction() as conn:
        tok, secret = admin_tokens.create_token(conn, name)
    if as_json:
        print_json({"id": tok.id, "name": tok.name, "token": secret})
        return
    console.print(f"created admin token {tok.id} ({tok.name})")
    console.print("token (shown once, store it now):")
    typer.echo(secret)


@token_app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List admin tokens (ids, names, prefixes; never secrets).

    Example:

        metis admin token list
    """
    with transaction() as conn:
        toks = admin_tokens.list_tokens(conn)
    rows = [
        {
            "id": t.id,
            "name": t.name,
            "prefix": t.display_prefix,
            "created_at": iso(t.created_at),
            "revoked_at": iso(t.revoked_at) if t.revoked_at else None,
        }
        for t in toks
    ]
    if as_json:
        print_json(rows)
        return
    print_table(
        "admin tokens",
        ["id", "name", "prefix", "created", "revoked"],
        [[r["id"], r["name"], r["prefix"], r["created_at"], r["revoked_at"]] for r in rows],
    )


@token_app.command("revoke")
def revoke(ref: str = typer.Argument(..., help="Token id (adm_…) or name.")) -> None:
    """Revoke an admin token; requests using it get 401 from then on.

    Example:

        metis admin token revoke dashboard
    """
    with transaction() as conn:
        tok = admin_tokens.revoke_token(conn, ref)
    console.print(f"revoked admin token {tok.id} ({tok.name})")
