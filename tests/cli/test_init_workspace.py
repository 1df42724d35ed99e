import json
import stat
from pathlib import Path

import pytest

from metis.db.engine import make_engine
from metis.db.migrate import current_revision, head_revision
from tests.conftest import BACKEND, Cli, invoke


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def _tree(home: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(home)): (_mode(p), p.stat().st_mtime_ns)
        for p in sorted(home.rglob("*"))
        if not p.name.endswith(("-wal", "-shm"))
    }


def test_init_twice_on_a_fresh_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "fresh"
    monkeypatch.setenv("METIS_HOME", str(home))
    monkeypatch.delenv("METIS_DATABASE_URL", raising=False)
    monkeypatch.delenv("METIS_MASTER_KEY", raising=False)

    first = invoke(["init"])
    assert first.exit_code == 0, first.output
    assert _mode(home) == 0o700
    assert _mode(home / "master.key") == 0o600
    assert _mode(home / "metis.db") == 0o600
    engine = make_engine(f"sqlite:///{home / 'metis.db'}")
    assert current_revision(engine) == head_revision()
    engine.dispose()
    before = _tree(home)
    key = (home / "master.key").read_bytes()

    second = invoke(["init"])
    assert second.exit_code == 0, second.output
    assert "nothing to do" in second.stdout
    assert _tree(home) == before
    assert (home / "master.key").read_bytes() == key


def test_init_tightens_a_loose_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "loose"
    home.mkdir(mode=0o755)
    monkeypatch.setenv("METIS_HOME", str(home))
    monkeypatch.delenv("METIS_DATABASE_URL", raising=False)
    monkeypatch.delenv("METIS_MASTER_KEY", raising=False)
    assert invoke(["init"]).exit_code == 0
    assert _mode(home) == 0o700


def test_workspace_add_and_list(cli: type[Cli]) -> None:
    cli.ok("workspace", "add", "acme", "--path", "/srv/acme")
    cli.ok("workspace", "add", "beta")
    out = json.loads(cli.ok("workspace", "list", "--json").stdout)
    assert [w["name"] for w in out] == ["acme", "beta"]
    assert out[0]["path"] == "/srv/acme" and out[0]["id"].startswith("ws_")
    assert "acme" in cli.ok("workspace", "list").stdout


@pytest.mark.parametrize("name", ["", "has space", "x" * 201, "-dash-first", "a;DROP TABLE"])
def test_workspace_bad_names(cli: type[Cli], name: str) -> None:
    r = cli.run("workspace", "add", "--", name)
    assert r.exit_code != 0
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1
    assert json.loads(cli.ok("workspace", "list", "--json").stdout) == []


def test_duplicate_workspace_is_one_line_error(cli: type[Cli]) -> None:
    cli.ok("workspace", "add", "acme")
    r = cli.run("workspace", "add", "acme")
    assert r.exit_code == 1
    assert r.stderr == "error: workspace 'acme' already exists\n"


def test_uninitialized_database_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METIS_HOME", str(tmp_path / "none"))
    monkeypatch.delenv("METIS_DATABASE_URL", raising=False)
    for args in (["workspace", "list"], ["report", "cost"], ["report", "forecast"]):
        r = invoke(args)
        assert r.exit_code == 1
        assert "metis init" in r.stderr and "Traceback" not in r.output
        assert f"no Metis database at {tmp_path / 'none' / 'metis.db'}" in r.stderr
        assert "export METIS_HOME" in r.stderr  # how to reach a running demo's data
    assert not (tmp_path / "none").exists()  # nothing created: no empty database to trip on


def test_malformed_setting_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METIS_LOG_LEVEL", "shouting")
    r = invoke(["workspace", "list"])
    assert r.exit_code == 1
    assert r.stderr.startswith("error: METIS_LOG_LEVEL is invalid")


def test_version() -> None:
    r = invoke(["--version"])
    assert r.exit_code == 0 and r.stdout.startswith("metis ")


@pytest.mark.skipif(BACKEND != "postgresql", reason="PostgreSQL URL handling")
def test_db_status_on_postgres(cli: type[Cli]) -> None:
    assert head_revision() in cli.ok("db", "status").stdout
