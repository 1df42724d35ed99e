"""The CLI imports a command's module only when that command runs (metis.cli.lazy).

Structural guards, not timings: a fresh interpreter running `metis --help` or
`metis simulator --help` must not have imported the heavy server/database
stack, and the help lines `metis --help` shows without importing must be the
commands' own.
"""

import json
import os
import subprocess
import sys

import pytest

from metis.cli.lazy import load_command
from metis.cli.main import COMMANDS

HEAVY = ("sqlalchemy", "fastapi", "alembic", "starlette", "uvicorn", "genai_prices", "metis.db")

_PROBE = """
import io, json, sys
from contextlib import redirect_stdout
from metis.cli.main import main
with redirect_stdout(io.StringIO()) as out:
    code = main(sys.argv[1:])
heavy = %r
loaded = sorted(m for m in sys.modules if any(m == h or m.startswith(h + ".") for h in heavy))
print(json.dumps({"code": code, "loaded": loaded, "out": out.getvalue()}))
"""


def _probe(*args: str) -> dict[str, object]:
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE % (HEAVY,), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    result: dict[str, object] = json.loads(proc.stdout.splitlines()[-1])
    return result


@pytest.mark.parametrize(
    "args", [["--help"], ["simulator", "--help"], ["simulator", "serve", "--help"]]
)
def test_help_imports_no_server_or_database_stack(args: list[str]) -> None:
    r = _probe(*args)
    assert r["code"] == 0
    assert r["loaded"] == [], f"`metis {' '.join(args)}` imported {r['loaded']}"


def test_root_help_lists_every_command_with_its_help() -> None:
    out = str(_probe("--help")["out"])
    flat = " ".join(out.split())  # entries wrap onto indented continuation lines
    for name, spec in COMMANDS.items():
        assert f" {name} {spec.help}" in flat, f"{name} missing from metis --help:\n{out}"


def test_a_command_that_needs_the_database_still_loads_it() -> None:
    # The guard above must be able to fail: `db --help` imports the db command module.
    r = _probe("db", "--help")
    assert r["code"] == 0 and "metis.db" in r["loaded"]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_registered_help_is_the_commands_own(name: str) -> None:
    spec = COMMANDS[name]
    cmd = load_command(name, spec)
    assert cmd.name == name
    own = (cmd.help or "").strip().splitlines()[0]
    assert spec.help == own, f"update COMMANDS[{name!r}] in metis/cli/main.py to {own!r}"
