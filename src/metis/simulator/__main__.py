"""``python -m metis.simulator [OPTIONS]``: the same as ``metis simulator serve``,
without importing every other ``metis`` command group first (starts faster)."""

import sys

import typer

from metis.cli.lazy import plain_help
from metis.cli.simulator import app
from metis.errors import MetisError


def run() -> int:
    command = plain_help(typer.main.get_command(app))  # the same plain --help as `metis`
    try:
        command.main(prog_name="python -m metis.simulator", standalone_mode=False)
    except MetisError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # click usage errors
        show = getattr(exc, "show", None)
        if show is None:
            raise
        show()
        return int(getattr(exc, "exit_code", 2))
    return 0


if __name__ == "__main__":
    sys.exit(run())
