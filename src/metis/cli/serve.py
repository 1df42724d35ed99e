"""``metis serve``: run the gateway, APIs and background jobs (uvicorn, uvloop, httptools)."""

import os

import typer


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind."),
    port: int = typer.Option(8080, "--port", help="TCP port to listen on."),
    workers: int = typer.Option(
        1,
        "--workers",
        min=1,
        help="Worker processes. Each keeps its own key cache and counter leases; "
        "spend caps stay within one reservation per process (docs/performance.md).",
    ),
    log_level: str = typer.Option(
        "warning", "--log-level", help="uvicorn's access/error log level."
    ),
    no_scheduler: bool = typer.Option(
        False,
        "--no-scheduler",
        help="Do not run the provider-usage sync scheduler in this process (same as "
        "METIS_INGEST_SCHEDULER=false), e.g. when a cron job or one dedicated process syncs. "
        "Running it in every process is also safe: leases let one process sync a credential.",
    ),
) -> None:
    """Serve the gateway (OpenAI- and Anthropic-compatible) and the Metis API.

    The database comes from METIS_DATABASE_URL (SQLite in METIS_HOME by
    default); run `metis init` first, and `metis db upgrade` after an upgrade:
    on a database that is not at this version's schema serve exits at once
    with an error. METIS_ADMIN_TOKEN and METIS_CRON_SECRET, when set, need at
    least 32 characters (METIS_ALLOW_WEAK_SECRETS=1 overrides). On
    SIGTERM/SIGINT in-flight requests finish and buffered usage records are
    flushed before exit.

    Example:

        metis serve --host 0.0.0.0 --port 8080 --workers 2 [--no-scheduler]
    """
    import uvicorn

    from metis.cli._common import ready_engine
    from metis.config import check_secret_strength, get_settings
    from metis.gateway.limits import HTTP

    s = get_settings()  # fail early with a clear error on a bad METIS_* value
    check_secret_strength(s)
    # Check the schema once here, before any worker starts: a database that is
    # uninitialized, behind the code or unreachable is a one-line error (exit 1)
    # instead of workers that start and then fail on every request.
    ready_engine(s).dispose()
    if no_scheduler:
        # Read by metis.ingest.scheduler in this process and the uvicorn workers.
        os.environ["METIS_INGEST_SCHEDULER"] = "false"
    # Interpreter tuning for a dedicated server process (GC freeze, GIL switch
    # interval; see metis.gateway.app._tune_interpreter). Inherited by workers.
    os.environ["METIS_SERVER_TUNING"] = "1"
    uvicorn.run(
        "metis.server:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http=HTTP,  # httptools, bounded heads, the gateway's fast cycle (metis.gateway.protocol)
        lifespan="on",
        access_log=False,
        log_level=log_level,
        timeout_graceful_shutdown=30,
    )
