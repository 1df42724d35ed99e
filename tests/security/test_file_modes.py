"""File modes of everything Metis writes, under a permissive umask (000).

Metis must not rely on the caller's umask: ``$METIS_HOME`` and every folder it
makes are 0700; the master key (and ``master.key.next`` of a rotation), the
SQLite database with its ``-wal``/``-shm`` files, exports written with
``--output`` and the Hermes plugin's spool are 0600. Files a previous run or a
careless operator left with wider modes are narrowed. Metis writes no log
files (logs go to stderr), so there are none to check.
"""

import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from metis.db.engine import make_engine
from metis.secrets.master_key import write_key_file
from tests.conftest import CliResult, invoke

PLUGIN_DIR = Path(__file__).resolve().parents[2] / "integrations" / "hermes"


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.lstat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Run the test with umask 000, so only Metis's own modes protect its files."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, open_umask: None) -> Path:
    """A not-yet-existing METIS_HOME with SQLite inside it and the key in a file."""
    h = tmp_path / "deep" / "metis-home"
    monkeypatch.setenv("METIS_HOME", str(h))
    for k in ("METIS_DATABASE_URL", "METIS_MASTER_KEY", "METIS_ADMIN_TOKEN", "METIS_CRON_SECRET"):
        monkeypatch.delenv(k, raising=False)
    return h


def ok(*args: str, input: str | None = None) -> CliResult:
    r = invoke(list(args), input=input)
    assert r.exit_code == 0, f"metis {' '.join(args)}: {r.output}"
    return r


def assert_private_tree(root: Path) -> None:
    """Every folder under (and including) ``root`` is 0700, every file 0600."""
    wrong = []
    for p in [root, *root.rglob("*")]:
        want = 0o700 if p.is_dir() else 0o600
        if _mode(p) != want:
            wrong.append(f"{p.relative_to(root.parent)}: {oct(_mode(p))} (want {oct(want)})")
    assert not wrong, "files Metis wrote with wrong modes:\n" + "\n".join(wrong)


def test_everything_in_metis_home_is_private(home: Path, tmp_path: Path) -> None:
    ok("init")
    assert {p.name for p in home.iterdir()} >= {"master.key", "metis.db"}
    ok("workspace", "add", "acme")
    ok(
        "provider-key",
        "add",
        "--workspace",
        "acme",
        "--provider",
        "openai",
        "--purpose",
        "inference",
        input="sk-test-file-modes-0001\n",
    )
    ok("gateway", "issue-key", "--name", "k", "--workspace", "acme", "--json")
    ok("ingest", "token", "create", "--workspace", "acme", "--name", "t")
    ok("admin", "token", "create", "--name", "a")
    ok("secrets", "rotate-master-key")
    # exports into the home and into a folder of the operator's
    ok("export", "usage", "--format", "csv", "--output", str(home / "usage.csv"))
    ok("export", "audit", "--output", str(home / "audit.jsonl"))
    # while a connection holds the database open, the WAL and shared-memory files exist
    eng = make_engine(f"sqlite:///{home / 'metis.db'}")
    try:
        with eng.begin() as c:
            c.execute(text("CREATE TABLE IF NOT EXISTS _probe (x INTEGER)"))
            c.execute(text("INSERT INTO _probe VALUES (1)"))
        with eng.connect() as c:
            c.execute(text("SELECT count(*) FROM _probe")).scalar_one()
            names = {p.name for p in home.iterdir()}
            assert {"metis.db-wal", "metis.db-shm"} <= names, names
            assert_private_tree(home)
    finally:
        eng.dispose()
    assert_private_tree(home)
    assert not (home / "master.key.next").exists()  # a finished rotation leaves none behind


def test_exports_elsewhere_are_0600_even_over_a_wider_file(home: Path, tmp_path: Path) -> None:
    ok("init")
    out = tmp_path / "shared-folder"
    out.mkdir(mode=0o777)
    wide = out / "usage.jsonl"
    wide.write_text("old\n")
    wide.chmod(0o666)
    ok("export", "usage", "--format", "jsonl", "--output", str(wide))
    ok("export", "usage", "--group-by", "day", "--format", "csv", "--output", str(out / "d.csv"))
    ok("export", "audit", "--output", str(out / "audit.jsonl"))
    for f in ("usage.jsonl", "d.csv", "audit.jsonl"):
        assert _mode(out / f) == 0o600, f
    assert wide.read_text() != "old\n"


def test_wider_modes_left_behind_are_narrowed(home: Path) -> None:
    """A home, database or half-written key file with group/other bits gets 0700/0600."""
    home.mkdir(parents=True, mode=0o755)
    home.chmod(0o755)
    db = home / "metis.db"
    db.touch()
    db.chmod(0o644)
    ok("init")
    assert _mode(home) == 0o700
    assert _mode(db) == 0o600
    # a crashed write left a world-readable temp file where the key is staged
    stale = (home / "master.key").with_suffix(".tmp")
    stale.write_text("junk\n")
    stale.chmod(0o666)
    write_key_file(home / "master.key", "a2V5")
    assert _mode(home / "master.key") == 0o600
    assert_private_tree(home)


def test_env_mode_rotation_writes_the_next_key_0600(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from metis.secrets.master_key import generate_key_text

    monkeypatch.setenv("METIS_MASTER_KEY", generate_key_text())
    ok("init")
    assert not (home / "master.key").exists()  # the key lives in the environment only
    ok("secrets", "rotate-master-key")
    assert _mode(home / "master.key.next") == 0o600
    assert_private_tree(home)


def test_hermes_plugin_spool_is_private(open_umask: None, tmp_path: Path) -> None:
    """The plugin spools unsent usage to disk while Metis is down: folder 0700, files 0600."""
    sys.path.insert(0, str(PLUGIN_DIR))
    try:
        from metis_hermes.sender import Sender
    finally:
        sys.path.remove(str(PLUGIN_DIR))
    spool = tmp_path / "plugin" / "spool"
    # nothing listens on port 9 of loopback: every send fails and the batch is spooled
    s = Sender("http://127.0.0.1:9", "mit_canary", spool, batch_size=1, flush_interval=0.05)
    try:
        s.submit({"dedupe_key": "x", "model": "gpt-4o"})
        s.close()
    finally:
        s.close()
    files = list(spool.iterdir())
    assert files, "the failed batch was not spooled"
    assert_private_tree(spool)
    assert "mit_canary" not in "".join(f.read_text() for f in files)


def test_demo_home_is_private(demo_server: Any) -> None:
    """``metis demo`` writes its database, master key and routing rules privately too."""
    home: Path = demo_server.home
    assert (home / "master.key").exists()
    assert_private_tree(home)
