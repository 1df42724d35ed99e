"""Shared fixtures: a real database per test on SQLite or PostgreSQL.

The backend is chosen by ``METIS_TEST_DATABASE_URL``: unset means SQLite
files in temp dirs; a PostgreSQL URL (to any existing database on a server
the test run may create databases on) means each pytest session creates its
own database there, migrates it once and truncates all tables between tests.
`scripts/test.sh` runs the suite once per backend.
"""

import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from metis.db.engine import make_engine, normalize_url
from metis.db.migrate import upgrade
from metis.db.tables import metadata
from metis.secrets.master_key import generate_key_text

pytest_plugins = [
    "tests.plugins.simulator",
    "tests.plugins.servers",
    "tests.plugins.identity",
    "tests.plugins.ingest",
    "tests.plugins.demo",
    "tests.plugins.clients",
]

# Hypothesis loads its built-in "ci" profile by itself under CI=true (derandomized: the
# same examples every run; no deadline; no example database), so CI is reproducible.
# METIS_HYPOTHESIS_PROFILE=ci does the same locally (e.g. to replay a CI failure).
if os.environ.get("METIS_HYPOTHESIS_PROFILE"):
    hypothesis_settings.load_profile(os.environ["METIS_HYPOTHESIS_PROFILE"])

# Egress settings of the machine running the tests must not reach the gateway, the
# SDK clients or the ingest clients under test (tests that need them set their own).
for _name in list(os.environ):
    if _name.lower().endswith("_proxy") or _name in (
        "METIS_UPSTREAM_CA_BUNDLE",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
    ):
        del os.environ[_name]

PG_BASE = os.environ.get("METIS_TEST_DATABASE_URL")
BACKEND = "postgresql" if PG_BASE else "sqlite"


def pytest_report_header() -> str:
    return f"metis test backend: {BACKEND}"


@pytest.fixture(scope="session")
def _template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database: a SQLite file to copy, or a PostgreSQL database URL."""
    if PG_BASE:
        base = normalize_url(PG_BASE)
        name = f"metis_test_{uuid.uuid4().hex[:12]}"
        admin = create_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(base).set(database=name).render_as_string(hide_password=False)
        eng = make_engine(url)
        upgrade(eng)
        eng.dispose()
        yield url
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    else:
        path = tmp_path_factory.mktemp("template") / "template.db"
        eng = make_engine(f"sqlite:///{path}")
        upgrade(eng)
        with eng.connect() as c:
            c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        eng.dispose()
        yield str(path)


@pytest.fixture
def db_url(_template: str, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated, empty database for this test."""
    if PG_BASE:
        eng = make_engine(_template)
        names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
        with eng.begin() as c:
            c.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        eng.dispose()
        yield _template
    else:
        path = tmp_path / "home" / "metis.db"
        path.parent.mkdir(mode=0o700)
        shutil.copyfile(_template, path)
        path.chmod(0o600)
        yield f"sqlite:///{path}"


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def metis_env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point METIS_* at this test's home and database; returns the variables set."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700, exist_ok=True)
    env = {
        "METIS_HOME": str(home),
        "METIS_DATABASE_URL": db_url,
        "METIS_MASTER_KEY": generate_key_text(),
        "METIS_LOG_FORMAT": "json",
    }
    for k in ("METIS_ADMIN_TOKEN", "METIS_CRON_SECRET"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def invoke(args: list[str], input: str | None = None) -> CliResult:
    """Run the real CLI entry (with its error handling) and capture its output."""
    from metis.cli.main import main

    runner = CliRunner()
    with runner.isolation(input=input) as (out, err, _):
        try:
            code = main(args)
        except SystemExit as exc:  # pragma: no cover - main() returns codes
            code = int(exc.code or 0)
        sys.stdout.flush()
        sys.stderr.flush()
        return CliResult(code, out.getvalue().decode(), err.getvalue().decode())


@pytest.fixture
def cli(metis_env: dict[str, str]) -> "type[Cli]":
    """Invoke ``metis`` against this test's environment: ``cli.run("workspace", "list")``."""
    return Cli


class Cli:
    @staticmethod
    def run(*args: str, input: str | None = None) -> CliResult:
        return invoke(list(args), input=input)

    @staticmethod
    def ok(*args: str, input: str | None = None) -> CliResult:
        """Run and assert exit 0, returning the result."""
        r = invoke(list(args), input=input)
        assert r.exit_code == 0, f"metis {' '.join(args)} failed ({r.exit_code}): {r.output}"
        return r
