"""``metis workspace``: the tenants that own keys, credentials and usage."""

import typer

from metis.cli._common import console, print_json, print_table, transaction
from metis.timeutil import iso
from metis.workspaces import add_workspace, list_workspaces

app = typer.Typer(help="Workspaces: the tenant unit.", no_args_is_help=True)


@app.command("add")
def add(
    name: str = typer.Argument(..., help="Unique name: letters, digits, '_', '.', '-'."),
    path: str | None = typer.Option(None, "--path", help="Optional project path it stands for."),
) -> None:
    """Create a workspace.

    Example:

        metis workspace add acme --path /srv/acme
    """
    with transaction() as conn:
        ws = add_workspace(conn, name, path)
    console.print(f"created workspace {ws.name} ({ws.id})")


@app.command("list")
def list_(
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List workspaces.

    Example:

        metis workspace list --json
    """
    with transaction() as conn:
        items = list_workspaces(conn)
    if json_out:
        print_json(
            [
                {"id": w.id, "name": w.name, "path": w.path, "created_at": iso(w.created_at)}
                for w in items
            ]
        )
        return
    if not items:
        console.print("no workspaces yet: create one with `metis workspace add NAME`")
        return
    print_table(
        "Workspaces",
        ["id", "name", "path", "created"],
        [(w.id, w.name, w.path, iso(w.created_at)) for w in items],
    )
