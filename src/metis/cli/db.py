"""``metis db``: schema migrations and maintenance."""

import typer

from metis.cli._common import console, settings
from metis.db.engine import make_engine
from metis.db.migrate import current_revision, head_revision
from metis.db.migrate import upgrade as run_upgrade

app = typer.Typer(help="Database schema and maintenance.", no_args_is_help=True)


@app.command()
def upgrade() -> None:
    """Migrate the database to the schema this Metis needs (a no-op when current).

    Example:

        METIS_DATABASE_URL=postgresql://metis@db/metis metis db upgrade
    """
    engine = make_engine(settings=settings())
    try:
        before, head = current_revision(engine), head_revision()
        if before == head:
            console.print(f"database is at {head}; nothing to do")
            return
        run_upgrade(engine)
        console.print(f"database migrated {before or 'empty'} -> {head}")
    finally:
        engine.dispose()


@app.command()
def status() -> None:
    """Show the schema revision of the database and the one this Metis needs.

    Example:

        metis db status
    """
    engine = make_engine(settings=settings())
    try:
        console.print(f"database: {current_revision(engine) or 'empty'}  code: {head_revision()}")
    finally:
        engine.dispose()
