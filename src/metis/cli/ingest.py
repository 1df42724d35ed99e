"""``metis ingest``: usage ingestion (provider sync/backfill/status, plugin push, tokens)."""

import typer

from metis.cli import ingest_pull, ingest_push

app = typer.Typer(
    help="Usage ingestion: provider sync, plugin push, ingest tokens.", no_args_is_help=True
)
ingest_push.attach(app)
ingest_pull.attach(app)
