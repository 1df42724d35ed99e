"""A throwaway PostgreSQL server a test may stop and start (scripts/pg.sh).

The suite's shared PostgreSQL must never be stopped, so the database-outage
test runs its own cluster in a fresh directory under /tmp on a free port.
As root (CI), scripts/pg.sh runs the server as the ``postgres`` user, which
must be able to reach the directory: hence /tmp (not pytest's 0700 tmp_path)
and mode 0755 on the parent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from metis.db.engine import make_engine
from metis.db.migrate import upgrade
from metis.util.server_thread import free_port

PG_SH = Path(__file__).resolve().parents[2] / "scripts" / "pg.sh"


class OwnPostgres:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        self.url = ""

    def start(self) -> str:
        out = subprocess.run(
            ["bash", str(PG_SH), "start", str(self.data), str(self.port)],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        self.url = out.stdout.strip().splitlines()[-1]
        return self.url

    def stop(self) -> None:
        subprocess.run(
            ["bash", str(PG_SH), "stop", str(self.data)],
            capture_output=True,
            timeout=60,
            check=True,
        )


@pytest.fixture
def own_postgres() -> Iterator[tuple[OwnPostgres, Engine]]:
    """(server, engine) of a migrated database on a cluster this test may stop."""
    root = Path(tempfile.mkdtemp(prefix="metis-pgstop-", dir="/tmp"))
    root.chmod(0o755)
    pg = OwnPostgres(root)
    try:
        pg.start()
    except (subprocess.CalledProcessError, FileNotFoundError) as e:
        shutil.rmtree(root, ignore_errors=True)
        err = getattr(e, "stderr", "") or str(e)
        msg = f"cannot start a throwaway PostgreSQL (scripts/pg.sh): {err.strip()[-300:]}"
        if os.geteuid() == 0:  # CI runs as root and installs the server: never skip there
            pytest.fail(msg)
        pytest.skip(msg)
    engine = make_engine(pg.url)
    try:
        upgrade(engine)
        yield pg, engine
    finally:
        engine.dispose()
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)
