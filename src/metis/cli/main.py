"""Entry point of the ``metis`` command.

Every command reports a user error as one line, ``error: <what was wrong>``,
and a non-zero exit; a traceback means a bug.
"""

import sys

import typer
from sqlalchemy.exc import OperationalError
from typer._click.exceptions import ClickException

from metis import __version__
from metis.cli import admin as admin_cmd
from metis.cli import alerts as alerts_cmd
from metis.cli import db as db_cmd
from metis.cli import export as export_cmd
from metis.cli import gateway as gateway_cmd
from metis.cli import ingest as ingest_cmd
from metis.cli import init as init_cmd
from metis.cli import provider_key as provider_key_cmd
from metis.cli import report as report_cmd
from metis.cli import routing as routing_cmd
from metis.cli import secrets as secrets_cmd
from metis.cli import serve as serve_cmd
from metis.cli import simulator as simulator_cmd
from metis.cli import workspace as workspace_cmd
from metis.errors import MetisError

app = typer.Typer(
    name="metis",
    help="Metis: a self-hosted LLM spend ledger and gateway.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"metis {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Metis: a self-hosted LLM spend ledger and gateway.

    Settings come from METIS_* environment variables: METIS_HOME (default
    ~/.metis), METIS_DATABASE_URL (default SQLite in METIS_HOME), ...
    """


app.command("init")(init_cmd.init)
app.command("serve")(serve_cmd.serve)
app.add_typer(db_cmd.app, name="db")
app.add_typer(admin_cmd.app, name="admin")
app.add_typer(export_cmd.app, name="export")
app.add_typer(report_cmd.app, name="report")
app.add_typer(alerts_cmd.app, name="alerts")
app.add_typer(workspace_cmd.app, name="workspace")
app.add_typer(provider_key_cmd.app, name="provider-key")
app.add_typer(routing_cmd.app, name="routing")
app.add_typer(secrets_cmd.app, name="secrets")
app.add_typer(ingest_cmd.app, name="ingest")
app.add_typer(simulator_cmd.app, name="simulator")
app.add_typer(gateway_cmd.app, name="gateway")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv`` and return the exit code; user errors become one line."""
    try:
        # Without standalone mode, click returns a `typer.Exit(code)` as the result.
        result = app(args=argv, prog_name="metis", standalone_mode=False)
        if isinstance(result, int) and not isinstance(result, bool):
            return result
    except MetisError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        return exc.exit_code
    except OperationalError as exc:
        typer.echo(f"error: database unavailable: {str(exc.orig).splitlines()[0]}", err=True)
        return 1
    except typer.Abort:
        typer.echo("Aborted.", err=True)
        return 1
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except ClickException as exc:  # usage errors: unknown option, missing argument...
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt:
        typer.echo("Interrupted.", err=True)
        return 130
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
