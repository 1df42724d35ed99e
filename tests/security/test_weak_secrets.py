"""``metis serve`` refuses guessable admin and cron secrets unless told otherwise.

Issue 19 item 6: "``METIS_ADMIN_TOKEN=a`` and ``METIS_CRON_SECRET=b`` are
accepted without a word." They are compared as given (not 256-bit random like
issued tokens), so `metis serve` now refuses either when shorter than 32
characters, naming the variable and never its value, unless
``METIS_ALLOW_WEAK_SECRETS=1``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.reliability.serve import ServeProcess


@pytest.mark.parametrize(("var", "value"), [("METIS_ADMIN_TOKEN", "a"), ("METIS_CRON_SECRET", "b")])
def test_serve_refuses_a_short_secret(
    cli: type[Cli], monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    cli.ok("init")
    monkeypatch.setenv(var, value)
    r = cli.run("serve", "--port", "1")  # refused before anything binds
    assert r.exit_code == 1, r.output
    assert r.stderr.startswith(f"error: {var} is shorter than 32 characters"), r.output
    assert "METIS_ALLOW_WEAK_SECRETS=1" in r.stderr
    assert f"={value}" not in r.output and f"'{value}'" not in r.output
    assert "Traceback" not in r.output


def test_both_short_secrets_are_named(cli: type[Cli], monkeypatch: pytest.MonkeyPatch) -> None:
    cli.ok("init")
    monkeypatch.setenv("METIS_ADMIN_TOKEN", "a")
    monkeypatch.setenv("METIS_CRON_SECRET", "b" * 31)
    r = cli.run("serve", "--port", "1")
    assert r.exit_code == 1
    assert "METIS_ADMIN_TOKEN and METIS_CRON_SECRET are shorter" in r.stderr, r.output


def test_weak_secrets_run_when_allowed(
    cli: type[Cli], metis_env: dict[str, str], tmp_path: Path
) -> None:
    cli.ok("init")
    env = {"METIS_ADMIN_TOKEN": "a", "METIS_ALLOW_WEAK_SECRETS": "1"}
    with ServeProcess(tmp_path, env) as srv:
        import httpx

        r = httpx.get(srv.url + "/admin/whoami", headers={"Authorization": "Bearer a"})
        assert r.status_code == 200, r.text
    strong = {"METIS_ADMIN_TOKEN": "s" * 32, "METIS_CRON_SECRET": "c" * 40}
    with ServeProcess(tmp_path, strong) as srv:
        assert srv.proc is not None and srv.proc.poll() is None
