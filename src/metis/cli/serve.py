"""``metis serve``: run the gateway, APIs and background jobs (uvicorn, uvloop, httptools)."""

import os
import socket
from typing import Any

import typer

from metis.errors import ValidationError


def listen(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket on ``host:port`` (0 = any free port); a clear error if taken.

    Bound here, before uvicorn starts, so the URL printed is the one actually
    listened on (also for ``--port 0``), and connections made as soon as it
    is printed wait in the backlog until the app has started.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ValidationError(
            f"cannot listen on {host}:{port} ({exc.strerror}): pick another --port "
            "(0 = any free port) or --host"
        ) from None
    sock.listen(backlog)
    sock.set_inheritable(True)  # uvicorn's worker processes serve on it
    return sock


def base_url(sock: socket.socket) -> str:
    """``http://HOST:PORT`` of a listening socket (IPv6 hosts in brackets)."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def banner(url: str, *, workers: int, scheduler: bool, settings: Any) -> list[str]:
    """What `metis serve` prints at start: where each part listens and what is on."""
    db = settings.effective_database_url
    where = "PostgreSQL" if db.startswith("postgres") else f"SQLite {settings.home / 'metis.db'}"
    if not db.startswith("postgres") and settings.database_url:
        where = "SQLite " + db.removeprefix("sqlite:///")
    host = url.split("//", 1)[1].rsplit(":", 1)[0]
    lines = [f"Metis listening on {url} ({workers} worker process{'es' if workers > 1 else ''})"]
    if host in ("0.0.0.0", "[::]"):  # noqa: S104 - describing the bind, not binding
        lines.append("  (all interfaces: reach it by this machine's address)")
    cron = "on (POST /cron/usage)" if settings.cron_secret else "off (set METIS_CRON_SECRET)"
    lines += [
        f"  gateway:   {url}/v1 (OpenAI SDK base_url) and {url} (Anthropic SDK base_url)",
        f"  API:       {url} (OpenAPI at {url}/openapi.json; Bearer admin token)",
        f"  dashboard: {url}/ui (sign in with METIS_ADMIN_TOKEN or "
        "`metis admin token create --name dashboard`)",
        "  scheduler: "
        + (
            "on (provider usage sync, daily and hourly)"
            if scheduler
            else "off (--no-scheduler / METIS_INGEST_SCHEDULER=false)"
        ),
        f"  cron trigger: {cron}; metrics: {url}/metrics",
        f"  database:  {where}",
        "Ctrl-C (or SIGTERM) stops it after in-flight requests finish.",
    ]
    return lines


def run_uvicorn(config: Any, sock: socket.socket) -> None:
    """Serve ``config`` on ``sock`` (one process, or ``config.workers`` worker processes).

    What ``uvicorn.run`` does after binding, with our own listening socket.
    """
    import sys

    from uvicorn.server import Server
    from uvicorn.supervisors import Multiprocess

    server = Server(config=config)
    try:
        if config.workers > 1:
            Multiprocess(config, sockets=[sock]).run()
        else:
            config.load_app()
            server.run(sockets=[sock])
    except KeyboardInterrupt:  # pragma: no cover - uvicorn handles the signals itself
        pass
    if config.workers == 1 and not server.started:
        sys.exit(3)  # uvicorn's STARTUP_FAILURE: the app's startup failed (logged above)


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind."),
    port: int = typer.Option(
        8080, "--port", min=0, max=65535, help="TCP port to listen on (0: any free port)."
    ),
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

    Prints the URLs it listens on (the actual port, also for --port 0) and
    what is on: gateway, API, dashboard, sync scheduler, cron trigger. The
    database comes from METIS_DATABASE_URL (SQLite in METIS_HOME by
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
    from metis.ingest.settings import get_ingest_settings

    s = get_settings()  # fail early with a clear error on a bad METIS_* value
    check_secret_strength(s)
    # An unusable HTTPS_PROXY/HTTP_PROXY or CA bundle is a one-line error here, not
    # a 502 on every call (docs/gateway.md, Egress).
    from metis.gateway.egress import check_environment

    check_environment(s.upstream_ca_bundle)
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
    config = uvicorn.Config(
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
    sock = listen(host, port, config.backlog)
    try:
        url = base_url(sock)
        scheduler = get_ingest_settings().ingest_scheduler
        for line in banner(url, workers=workers, scheduler=scheduler, settings=s):
            typer.echo(line)
        run_uvicorn(config, sock)
    finally:
        sock.close()
