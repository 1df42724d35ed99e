"""``metis demo``: seed a throwaway Metis with realistic data and serve it."""

import os
import shlex
import signal
import threading
import time
from pathlib import Path
from types import FrameType

import typer


def demo(
    port: int = typer.Option(
        8080, "--port", min=0, max=65535, help="Port of the Metis server (0: pick a free one)."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind."),
    home: Path | None = typer.Option(  # noqa: B008 - typer idiom
        None,
        "--home",
        help="METIS_HOME to use (default: $METIS_HOME if set, else a temp dir removed on exit).",
    ),
    keep: bool = typer.Option(False, "--keep", help="Keep the temp home on exit (prints it)."),
    history_days: int = typer.Option(
        14, "--history-days", min=1, max=60, help="Days of provider history the simulator has."
    ),
) -> None:
    """Run Metis on demo data: simulator, teams, caps, traffic, plugin push, provider sync.

    Starts the local provider simulator (no network is used), creates a
    workspace with provider keys pointing at it, users, two teams with caps and
    gateway keys, sends a burst of gateway traffic in both API shapes
    (streamed and not; one team goes past its soft cap, the other into its
    hard cap), pushes plugin usage, syncs the providers' usage reports, then
    serves the gateway, API and dashboard until Ctrl-C / SIGTERM. The
    database is METIS_DATABASE_URL when set (PostgreSQL works too), else
    SQLite in the home; it must be empty (no workspaces, users or teams).
    The printed admin token and gateway key belong to the throwaway demo;
    provider keys (the simulator's) are stored encrypted and never printed.

    Example:

        metis demo --port 8080
    """
    from metis.demo.runner import Demo, DemoOptions

    stop = threading.Event()
    serving = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        first = not stop.is_set()
        stop.set()
        if first and not serving.is_set():  # still seeding: abandon the steps, clean up
            raise KeyboardInterrupt

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    run = Demo(
        DemoOptions(host=host, port=port, home=home, keep=keep, history_days=history_days),
        echo=lambda line: typer.echo(line),
    )
    try:
        t0 = time.monotonic()
        try:
            result = run.start()
        except KeyboardInterrupt:
            run.stop()
            typer.echo("Interrupted before the demo was ready; stopped and cleaned up.", err=True)
            raise typer.Exit(130) from None
        serving.set()
        key = result.seeded.keys["alice-laptop"]
        typer.echo(f"Ready in {time.monotonic() - t0:.1f} s.")
        typer.echo("")
        typer.echo(f"Dashboard: {result.dashboard_url}")
        typer.echo(f"Admin token: {result.admin_token}")
        typer.echo(
            f"API: {result.url} (schema at /openapi.json; send the admin token as "
            "'Authorization: Bearer <token>')"
        )
        typer.echo(f"Gateway: {result.url}/v1 (OpenAI SDK base_url) and {result.url} (Anthropic)")
        typer.echo(f"Gateway key ({key.name}, team {key.team}): {key.secret}")
        typer.echo("")
        typer.echo("Point the CLI at the demo's data (in another shell, while it runs):")
        typer.echo(f"  export METIS_HOME={shlex.quote(str(result.home))}")
        if os.environ.get("METIS_DATABASE_URL"):
            typer.echo("  export METIS_DATABASE_URL=...   # the same URL this demo runs on")
        typer.echo("  metis report cost --group-by team   # or: metis report forecast")
        typer.echo(
            "Press Ctrl-C to stop"
            + (
                f"; the home stays at {result.home}."
                if keep or home is not None or run.temp_home is None
                else "; its temporary home is then removed."
            )
        )
        while not stop.wait(0.5):
            pass
        typer.echo("Stopping...")
    finally:
        run.stop()
        for s, h in previous.items():
            signal.signal(s, h)
