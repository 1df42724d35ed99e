"""Entry point of the ``metis`` command.

Every command reports a user error as one line, ``error: <what was wrong>``,
and a non-zero exit; a traceback means a bug.
"""

import sys

import typer
from typer._click.exceptions import ClickException

from metis import __version__
from metis.cli.lazy import LazyCommand, LazyGroup
from metis.errors import MetisError

# Every command: name -> where it lives and the line `metis --help` shows for it.
# Modules are imported only when their command runs (see metis.cli.lazy), so
# `metis --help` and `metis simulator serve` start without FastAPI/SQLAlchemy.
# To add a command, add a row here (its help must equal the command's own
# first help line; tests/cli/test_lazy.py checks that).
COMMANDS: dict[str, LazyCommand] = {
    "init": LazyCommand(
        "metis.cli.init:init",
        "Create $METIS_HOME (0700), the master key (0600) and the database, and migrate it.",
    ),
    "serve": LazyCommand(
        "metis.cli.serve:serve",
        "Serve the gateway (OpenAI- and Anthropic-compatible) and the Metis API.",
    ),
    "demo": LazyCommand(
        "metis.cli.demo:demo",
        "Run Metis on demo data: simulator, teams, caps, traffic, plugin push, provider sync.",
    ),
    "db": LazyCommand("metis.cli.db:app", "Database schema and maintenance."),
    "admin": LazyCommand(
        "metis.cli.admin:app", "Admin access: tokens for the admin/analytics API."
    ),
    "export": LazyCommand(
        "metis.cli.export:app", "Export usage, the audit log, and FOCUS for FinOps tools."
    ),
    "report": LazyCommand("metis.cli.report:app", "Reports in the terminal."),
    "alerts": LazyCommand(
        "metis.cli.alerts:app", "Alert sinks, delivery status and manual passes."
    ),
    "workspace": LazyCommand("metis.cli.workspace:app", "Workspaces: the tenant unit."),
    "provider-key": LazyCommand(
        "metis.cli.provider_key:app",
        "Provider keys of a workspace (OpenAI, Anthropic, Azure, Gemini, Bedrock, "
        "OpenAI-compatible), stored encrypted.",
    ),
    "prices": LazyCommand(
        "metis.cli.prices:app",
        "Prices: what prices each configured model (genai-prices, the prices file).",
    ),
    "routing": LazyCommand(
        "metis.cli.routing:app", "Routing rules (soft caps, model routing, fallbacks)."
    ),
    "secrets": LazyCommand("metis.cli.secrets:app", "Master key maintenance."),
    "ingest": LazyCommand(
        "metis.cli.ingest:app", "Usage ingestion: provider sync, plugin push, ingest tokens."
    ),
    "simulator": LazyCommand(
        "metis.cli.simulator:app", "The local OpenAI/Anthropic provider simulator."
    ),
    "gateway": LazyCommand(
        "metis.cli.gateway:app", "Gateway identity: users, teams and gateway keys."
    ),
}


class _MetisGroup(LazyGroup):
    lazy = COMMANDS


app = typer.Typer(
    cls=_MetisGroup,
    name="metis",
    help="Metis: a self-hosted LLM spend ledger and gateway.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # plain help: see metis.cli.lazy.plain_help
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
    except Exception as exc:
        message = _database_error(exc)
        if message is None:
            raise
        typer.echo(f"error: {message}", err=True)
        return 1
    return 0


def _database_error(exc: Exception) -> str | None:
    """One line for a SQLAlchemy database error (what kind, `metis.db.errors`), else None.

    An outage keeps the driver's first line (``database unavailable: …``: the
    operator needs the host or path); a refused value says so instead of
    "unavailable". Checked without importing SQLAlchemy: a command that never
    loaded it cannot have raised its errors.
    """
    if "sqlalchemy" not in sys.modules:
        return None
    from sqlalchemy.exc import DBAPIError, OperationalError

    if not isinstance(exc, DBAPIError):
        return None
    from metis.db.errors import classify

    f = classify(exc)
    if isinstance(exc, OperationalError) and f.code == "database_unavailable":
        return f"database unavailable: {str(exc.orig).splitlines()[0]}"
    return f.message


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
