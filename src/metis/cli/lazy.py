"""A typer group whose subcommands are imported only when they run.

Why: importing every command module up front pulls in FastAPI, SQLAlchemy,
Alembic, genai-prices, ... (about a second of imports) before any command
runs, so `metis --help` and `metis simulator serve` started slowly. Here each
command is registered by its import path plus the one-line help `metis
--help` shows; the module is imported the first time the command is resolved
(run, or its own `--help`). `tests/cli/test_lazy.py` checks that every
registered help line equals the loaded command's own help, so the two cannot
drift, and that `metis simulator --help` imports neither SQLAlchemy nor FastAPI.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import typer
from typer import _click
from typer.core import TyperCommand, TyperGroup


@dataclass(frozen=True)
class LazyCommand:
    """Where a command lives (``"module:attribute"``) and its one-line help.

    The attribute is a `typer.Typer` (a command group) or a command function.
    """

    target: str
    help: str


class _Placeholder(TyperCommand):
    """Stands in for a command that has not been imported yet (help listings only)."""

    def __init__(self, name: str, spec: LazyCommand) -> None:
        super().__init__(name=name, help=spec.help, short_help=spec.help)
        self.spec = spec


def plain_help(cmd: _click.Command) -> _click.Command:
    """Make ``cmd`` and its subcommands print plain, exact help; returns ``cmd``.

    Rich help read ``[y/N]`` in a docstring as markup (and dropped it) and
    labelled every flag ``<bool>``; plain help prints the docstring as written
    and shows flags bare. Indented blocks (the examples) keep their lines
    instead of being re-wrapped into the paragraph above.
    """
    if hasattr(cmd, "rich_markup_mode"):
        cmd.rich_markup_mode = None
    if cmd.help:
        cmd.help = _keep_indented_blocks(cmd.help)
        if not cmd.short_help:  # listings show the whole first paragraph, not 45 characters
            cmd.short_help = " ".join(inspect.cleandoc(cmd.help).split("\n\n")[0].split())
    for sub in getattr(cmd, "commands", {}).values():
        if not isinstance(sub, _Placeholder):
            plain_help(sub)
    return cmd


def _keep_indented_blocks(text: str) -> str:
    """Mark indented paragraphs with click's no-rewrap marker (``\b``)."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    out = [
        "\b\n" + p if p.startswith((" ", "\t")) and not p.startswith("\b") else p
        for p in paragraphs
    ]
    return "\n\n".join(out)


def load_command(name: str, spec: LazyCommand) -> _click.Command:
    """Import ``spec.target`` and build its click command, named ``name``."""
    module_name, _, attr = spec.target.partition(":")
    obj: Any = getattr(importlib.import_module(module_name), attr)
    if isinstance(obj, typer.Typer):
        # get_group, not get_command: a Typer with one command must stay a group
        # (`metis simulator serve`), as `add_typer` would have made it.
        cmd: _click.Command = typer.main.get_group(obj)
    else:
        single = typer.Typer(add_completion=False)
        single.command(name)(obj)
        cmd = typer.main.get_command(single)
    cmd.name = name
    return plain_help(cmd)


class LazyGroup(TyperGroup):
    """A `TyperGroup` that also serves the commands in its class's ``lazy`` table.

    Subclass it with ``lazy = {name: LazyCommand(...)}`` and pass it as
    ``typer.Typer(cls=...)``. Commands registered the usual typer way
    (``app.command``, ``app.add_typer``) keep working and are listed after the
    lazy ones.
    """

    lazy: ClassVar[Mapping[str, LazyCommand]] = {}

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        eager = dict(self.commands)
        self.commands.clear()
        for name, spec in self.lazy.items():
            self.commands[name] = _Placeholder(name, spec)
        self.commands.update(eager)
        self._listing = False

    def get_command(self, ctx: _click.Context, cmd_name: str) -> _click.Command | None:
        cmd = self.commands.get(cmd_name)
        if isinstance(cmd, _Placeholder) and not self._listing:
            cmd = load_command(cmd_name, cmd.spec)
            self.commands[cmd_name] = cmd
        return cmd

    def format_help(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        # Listing commands needs only their names and help lines: import nothing.
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False
