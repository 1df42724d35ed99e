"""A read-only or full SQLite file: clear errors, nothing stored lost, no corruption.

How the faults are made, and why: the suite runs as root in CI, where
``chmod`` does not stop writes, and ``chattr +i`` or a loop device depend on
the file system and tools at hand. A private mount namespace (``unshare -m``;
``unshare -rm``, a user namespace, when not root) works for both and is real:

- read-only: the database *file* is bind-mounted read-only over itself, so
  every write gets EROFS from the kernel -- what SQLite sees on a file whose
  permissions or mount forbid writing. Reads keep working (the folder stays
  writable for ``-wal``/``-shm``, as with a write-protected file).
- full: the home folder is a 2 MiB tmpfs, filled with a filler file until 36
  KiB are left: enough for SQLite's 32 KiB shared-memory index (reads work),
  not for one WAL frame, so every write gets ENOSPC. Deleting the filler
  (through ``/proc/<pid>/root``) frees the disk again.

Only the processes under test (``metis`` CLI and ``metis serve``) see the
mount. Expected: the CLI fails with one line naming the cause; the API
answers 503 ``database_unavailable`` naming it; the gateway keeps answering
and holds its records until the database takes writes again (docs/gateway.md
"When the database is unavailable"); ``PRAGMA integrity_check`` is ``ok`` and
every previously stored row is unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from metis.ingest import tokens
from metis.ingest.push import PushTarget, ingest_items
from metis.timeutil import iso, utcnow
from tests.conftest import BACKEND
from tests.plugins.simulator import Simulator
from tests.reliability.serve import GRACEFUL_EXIT, ServeProcess
from tests.reliability.traffic import Traffic, issue, provision

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(BACKEND != "sqlite", reason="SQLite file faults (PostgreSQL: test_db_down)"),
]

UNSHARE = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-rm"]
RO_FILE = 'mount --bind -o ro "$0" "$0" && exec "$@"'
FULL_HOME = (
    'set -e; mount -t tmpfs -o size=2m tmpfs "$0"; chmod 700 "$0"; '
    'cp "$METIS_SEED_DB" "$0/metis.db"; chmod 600 "$0/metis.db"; '
    'dd if=/dev/zero of="$0/filler" bs=4096 2>/dev/null || true; '
    'truncate -s -36K "$0/filler"; exec "$@"'
)
ROWS_SQL = (
    "SELECT source, dedupe_key, input_tokens, output_tokens, cost_nanousd, revision "
    "FROM usage_records ORDER BY source, dedupe_key"
)
CLI = [sys.executable, "-c", "from metis.cli.main import run; run()"]


@pytest.fixture(scope="module")
def _mount_ok(tmp_path_factory: pytest.TempPathFactory) -> None:
    d = tmp_path_factory.mktemp("probe")
    probe = [*UNSHARE, "sh", "-c", 'mount -t tmpfs -o size=64k tmpfs "$0"', str(d)]
    r = subprocess.run(probe, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        msg = f"no private mount namespace here ({' '.join(UNSHARE)}): {r.stderr.strip()}"
        if os.geteuid() == 0:  # CI runs as root, where unshare works: never skip there
            pytest.fail(msg)
        pytest.skip(msg)


def _seed(engine: Engine, simulator: Simulator) -> tuple[str, str]:
    """Workspace, credentials, a gateway key and 40 pushed records: (token, key) secrets."""
    provision(engine, simulator.url)
    _, key = issue(engine, "k")
    with engine.begin() as conn:
        tok, secret = tokens.create_token(conn, "w", "laptop")
        items = [_item(f"seed-{i}", i) for i in range(40)]
        res = ingest_items(conn, PushTarget(tok.workspace_id, tok.source, tok.id), items)
        assert len(res.accepted) == 40
    engine.dispose()
    return secret, key


def _item(key: str, n: int) -> dict[str, Any]:
    return {
        "idempotency_key": key,
        "time": iso(utcnow() - timedelta(minutes=5)),
        "provider": "openai",
        "model": "gpt-4o-mini",
        "input_tokens": 1000 + n,
        "output_tokens": 200,
    }


def _state(path: Path | str) -> tuple[str, list[tuple[Any, ...]]]:
    """(integrity_check, every usage row's key fields), read without writing."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        (check,) = conn.execute("PRAGMA integrity_check").fetchone()
        rows = conn.execute(ROWS_SQL).fetchall()
        return check, rows
    finally:
        conn.close()


def _state_inside(pid: int, path: Path) -> tuple[str, list[tuple[Any, ...]]]:
    """`_state` of a file in ``pid``'s mount namespace (SQLite resolves the
    ``/proc/<pid>/root`` link to our own tree, so read it from in there)."""
    code = (  # `_state`, standalone: a bare interpreter starts in a fraction of a second
        "import json, sqlite3, sys\n"
        "conn = sqlite3.connect(f'file:{sys.argv[1]}?mode=ro', uri=True)\n"
        "(c,) = conn.execute('PRAGMA integrity_check').fetchone()\n"
        f"rows = conn.execute({ROWS_SQL!r}).fetchall()\n"
        "print(json.dumps([c, rows]))"
    )
    ns = ["nsenter", "-t", str(pid), "-m"] + ([] if os.geteuid() == 0 else ["-U"])
    r = subprocess.run(
        [*ns, sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    check, rows = json.loads(r.stdout)
    return check, [tuple(x) for x in rows]


def _checkpoint(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def _push(url: str, secret: str, keys: list[str]) -> httpx.Response:
    items = [_item(k, i) for i, k in enumerate(keys)]
    return httpx.post(
        url + "/v1/ingest/usage",
        json={"items": items},
        headers={"authorization": f"Bearer {secret}"},
        timeout=30,
    )


def _one_line_error(r: subprocess.CompletedProcess[str], cause: str) -> None:
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and cause in lines[0], r.stderr


def test_read_only_file(
    _mount_ok: None,
    metis_env: dict[str, str],
    engine: Engine,
    simulator: Simulator,
    tmp_path: Path,
) -> None:
    db = Path(metis_env["METIS_HOME"]) / "metis.db"
    secret, key = _seed(engine, simulator)
    _checkpoint(db)
    before = _state(db)
    wrap = [*UNSHARE, "sh", "-c", RO_FILE, str(db)]

    listed = subprocess.run([*wrap, *CLI, "workspace", "list"], capture_output=True, text=True)
    assert listed.returncode == 0 and " w " in listed.stdout, listed.stderr  # reads work
    added = subprocess.run([*wrap, *CLI, "workspace", "add", "x"], capture_output=True, text=True)
    _one_line_error(added, "readonly database")

    srv = ServeProcess(tmp_path, wrap=wrap).start()
    try:
        r = _push(srv.url, secret, ["ro-1", "ro-2"])
        assert r.status_code == 503, r.text
        assert r.json() == {
            "error": "database_unavailable",
            "message": "the database is read-only; retry later",
        }
        assert r.headers["retry-after"] == "5"
        # The gateway still answers; its records wait in the buffer (and would be
        # written once the file is writable again, as the disk-full test shows).
        calls = Traffic(srv.url, key, threads=1, limit=4).start().join()
        assert [o.status for o in calls] == [200] * 4
        _wait_log(srv, "database write failed")
    finally:
        srv.kill()
    assert "readonly database" in srv.log()
    assert "Traceback" not in srv.log().split("database write failed")[0]
    after = _state(db)
    assert after == before and after[0] == "ok"


def _wait_log(srv: ServeProcess, text: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in srv.log():
        assert time.monotonic() < deadline, srv.log()
        time.sleep(0.1)


def test_disk_full(
    _mount_ok: None,
    metis_env: dict[str, str],
    engine: Engine,
    simulator: Simulator,
    tmp_path: Path,
) -> None:
    seed_db = Path(metis_env["METIS_HOME"]) / "metis.db"
    secret, key = _seed(engine, simulator)
    _checkpoint(seed_db)
    before = _state(seed_db)
    full = tmp_path / "full"
    full.mkdir()
    env = {
        "METIS_SEED_DB": str(seed_db),
        "METIS_HOME": str(full),
        "METIS_DATABASE_URL": f"sqlite:///{full / 'metis.db'}",
    }
    wrap = [*UNSHARE, "sh", "-c", FULL_HOME, str(full)]

    added = subprocess.run(
        [*wrap, *CLI, "workspace", "add", "x"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )
    _one_line_error(added, "database or disk is full")

    srv = ServeProcess(tmp_path, env, wrap=wrap).start()
    try:
        inside = Path(f"/proc/{srv.pid}/root") / full.relative_to("/")  # the server's tmpfs
        r = _push(srv.url, secret, ["full-1", "full-2"])
        assert r.status_code == 503, r.text
        assert r.json()["message"] == "the database's disk is full; retry later"
        calls = Traffic(srv.url, key, threads=2, limit=3).start().join()
        assert [o.status for o in calls] == [200] * 6
        answered = {o.request_id for o in calls}
        _wait_log(srv, "database write failed")
        assert "database or disk is full" in srv.log()
        check, rows = _state_inside(srv.pid, full / "metis.db")
        assert check == "ok" and rows == before[1]  # nothing half-written, nothing lost

        (inside / "filler").unlink()  # space again: the buffered records are written
        _wait_log(srv, "database writes resumed")
        check, rows = _state_inside(srv.pid, full / "metis.db")
        assert check == "ok"
        gw = {r[1] for r in rows if r[0] == "gateway"}
        assert gw == answered
        assert [r for r in rows if r[0] != "gateway"] == before[1]
        assert _push(srv.url, secret, ["full-1"]).status_code == 200
        assert srv.term() in GRACEFUL_EXIT
    finally:
        srv.kill()
    shutil.rmtree(full, ignore_errors=True)
