"""The demo sequence: home, simulator, seed, server, traffic, plugin push, sync, serve.

`Demo.start` runs every step and leaves the simulator and the Metis server
running (uvicorn in threads, `metis.util.server_thread`); `Demo.stop` stops
them gracefully (the gateway flushes its buffered writes) and removes a
throwaway home. The CLI (`metis.cli.demo`) waits for a signal in between.
"""

import asyncio
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from metis.config import Settings, get_settings
from metis.db.engine import make_engine
from metis.db.tables import teams, users, workspaces
from metis.demo import plugin, seed, traffic
from metis.errors import ConflictError, MetisError, ValidationError
from metis.home import initialize
from metis.ingest.sync import RunOutcome, run_sync
from metis.util.server_thread import ServerThread, free_port

HISTORY_DAYS = 14
SIM_SEED = 7


@dataclass
class DemoOptions:
    host: str = "127.0.0.1"
    port: int = 0
    home: Path | None = None
    keep: bool = False
    history_days: int = HISTORY_DAYS


@dataclass
class DemoResult:
    """What a running demo tells its user (and tests)."""

    url: str
    admin_token: str
    home: Path
    seeded: seed.Seeded
    traffic: traffic.TrafficReport
    push: plugin.PushReport
    sync: list[RunOutcome]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def dashboard_url(self) -> str:
        return f"{self.url}/ui"


def _check_port(host: str, port: int) -> None:
    """A clear error instead of a server thread dying on a taken port."""
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            raise ValidationError(
                f"cannot listen on {host}:{port} ({exc.strerror}): pick another --port "
                "(0 = any free port)"
            ) from None


class Demo:
    """One demo run; `start` then `stop` (also after a failed `start`)."""

    def __init__(self, opts: DemoOptions, echo: Callable[[str], None] = print) -> None:
        self.opts = opts
        self.echo = echo
        self.temp_home: Path | None = None
        self.engine: Engine | None = None
        self.sim: ServerThread | None = None
        self.server: ServerThread | None = None
        self.app: Any = None

    # ------------------------------------------------------------------ steps

    def _home(self) -> Settings:
        """Pick METIS_HOME (option, environment, or a fresh temp dir) and set it up."""
        if self.opts.home is not None:
            os.environ["METIS_HOME"] = str(self.opts.home.expanduser())
        elif not os.environ.get("METIS_HOME"):
            self.temp_home = Path(tempfile.mkdtemp(prefix="metis-demo-"))
            os.environ["METIS_HOME"] = str(self.temp_home)
        os.environ.setdefault("METIS_LOG_LEVEL", "WARNING")  # progress lines, not JSON logs
        settings = get_settings()
        initialize(settings)
        return settings

    def _check_fresh(self, engine: Engine) -> None:
        """Seed only an empty ledger: never mix demo people and spend into real data."""
        with engine.connect() as conn:
            found = {
                name: conn.execute(select(func.count()).select_from(table)).scalar_one()
                for name, table in (("workspaces", workspaces), ("users", users), ("teams", teams))
            }
        if any(found.values()):
            what = ", ".join(f"{n} {name}" for name, n in found.items() if n)
            raise ConflictError(
                f"this database already has data ({what}): the demo only seeds an empty "
                "database; give it a fresh --home (or METIS_HOME / METIS_DATABASE_URL), or "
                "run `metis serve` to look at what is there"
            )

    def start(self) -> DemoResult:
        t0 = time.monotonic()
        timings: dict[str, float] = {}

        def lap(name: str) -> None:
            timings[name] = round(time.monotonic() - t0, 2)

        port = self.opts.port or free_port(self.opts.host)
        _check_port(self.opts.host, port)  # before anything is created
        settings = self._home()
        where = "PostgreSQL" if settings.database_url else "SQLite"
        self.echo(f"Home: {settings.home} (database: {where})")
        self.engine = engine = make_engine(settings=settings)
        self._check_fresh(engine)
        if seed.write_routing_file(settings.effective_routing_file):
            self.echo(f"Routing rules: {settings.effective_routing_file} (team daily soft cap)")
        else:
            self.echo(f"Routing rules: keeping {settings.effective_routing_file}")

        from metis.simulator import create_app as create_simulator

        self.echo(f"Starting the provider simulator ({self.opts.history_days} days of history)")
        self.sim = ServerThread(
            create_simulator(seed=SIM_SEED, history_days=self.opts.history_days)
        ).start()
        lap("simulator")

        self.echo("Creating workspace 'demo', provider keys, 5 users, 2 teams with caps, 6 keys")
        with engine.begin() as conn:
            seeded = seed.seed(conn, settings, self.sim.url)
        lap("seed")

        from metis.server import create_app

        # Plugin rows of calls sent through this gateway are recognised as such.
        os.environ.setdefault("METIS_GATEWAY_URLS", f"http://{self.opts.host}:{port}")
        self.app = create_app(get_settings())
        self.server = ServerThread(self.app, host=self.opts.host, port=port).start(timeout=30)
        url = self.server.url
        lap("server")

        self.echo("Sending gateway traffic (OpenAI and Anthropic shapes, streamed and not)")
        report = traffic.drive(url, seeded.keys)
        self._flush()
        if report.errors:
            first = report.errors[0]
            raise MetisError(f"demo traffic failed: {first.key} got HTTP {first.status}")
        combos = ", ".join(
            f"{shape}{' stream' if stream else ''}: {n}"
            for (shape, stream), n in sorted(report.combos().items())
        )
        self.echo(
            f"  {len(report.ok)} calls answered ({combos}); {len(report.rerouted)} routed "
            f"to cheaper models past the soft cap; {len(report.capped)} refused by a hard cap"
        )
        lap("traffic")

        self.echo("Pushing plugin usage (alice's agent)")
        pushed = plugin.run(
            url, self.sim.url, seeded.ingest_token, report.ok, days=min(6, self.opts.history_days)
        )
        if pushed.status != 200:
            raise MetisError(f"demo plugin push failed: HTTP {pushed.status}")
        self.echo(f"  {pushed.accepted} items accepted")
        lap("plugin")

        self.echo(f"Syncing provider usage ({self.opts.history_days + 1} days, both providers)")
        outcomes = run_sync(
            engine,
            settings,
            workspace=seeded.workspace_id,
            kind="backfill",
            days=self.opts.history_days + 1,
        )
        bad = [o for o in outcomes if o.status != "ok"]
        if bad:
            raise MetisError(f"demo provider sync failed: {bad[0].error_message}")
        self.echo(f"  {sum(o.stored for o in outcomes)} provider records stored")
        lap("sync")
        return DemoResult(
            url=url,
            admin_token=seeded.admin_token,
            home=settings.home,
            seeded=seeded,
            traffic=report,
            push=pushed,
            sync=outcomes,
            timings=timings,
        )

    def _flush(self) -> None:
        """Make the gateway write its buffered records now (they are on the dashboard next)."""
        gw = self.app.components.gateway
        asyncio.run_coroutine_threadsafe(gw.writer.flush(), gw.loop).result(30)

    def stop(self) -> None:
        """Stop the servers (flushing the gateway), release the database, remove a temp home."""
        for srv in (self.server, self.sim):
            if srv is not None:
                srv.stop(timeout=30)
        self.server = self.sim = None
        if self.engine is not None:
            self.engine.dispose()
            self.engine = None
        if self.temp_home is not None and not self.opts.keep:
            shutil.rmtree(self.temp_home, ignore_errors=True)
            self.temp_home = None
