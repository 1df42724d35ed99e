"""Read one figure, the window's total cost, from every surface Metis shows it on.

Each reader returns ``(window, total)``: the half-open window the surface says
it answered for (``{"start": ..., "end": ...}``, ISO 8601 ``Z``) and the total
as an exact Decimal. Nothing is recomputed here: the HTTP API and the
dashboard are read through a real client on a real server, the CLI through
its runner, and money is parsed as Decimal from the bytes each surface wrote
(an amount in exponent notation fails the reader).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx

from tests.conftest import Cli

GROUP_BYS = ("model", "provider", "day", "workspace", "gateway_key", "user", "team", "source")
PLAIN = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")
Window = dict[str, str]


def money(v: Any) -> Decimal:
    """An amount as written by Metis: plain decimal text (never ``8.0E-8``)."""
    text = str(v)
    assert PLAIN.match(text), f"money not in plain notation: {text!r}"
    return Decimal(text)


def _json(text: str) -> Any:
    return json.loads(text, parse_float=str, parse_int=str)


def _lines(text: str) -> list[dict[str, Any]]:
    return [_json(x) for x in text.splitlines() if x.strip()]


@dataclass
class Surfaces:
    """The surfaces of one running server (API, export API, dashboard) and the CLI."""

    api: httpx.Client
    ui: httpx.Client
    cli: type[Cli]

    def _get(self, path: str, **params: str) -> httpx.Response:
        r = self.api.get(path, params=params)
        assert r.status_code == 200, (path, params, r.text[:500])
        return r

    # -- the analytics API -----------------------------------------------------------
    def cost(self, view: str, group_by: str) -> tuple[Window, Decimal]:
        body = _json(self._get("/analytics/cost", view=view, group_by=group_by).text)
        total = money(body["total"]["cost_usd"])
        assert sum((money(d["cost_usd"]) for d in body["data"]), Decimal(0)) == total, group_by
        return body["window"], total

    def by_team(self, view: str) -> tuple[Window, Decimal]:
        body = _json(self._get("/analytics/by_team", view=view).text)
        for t in body["data"]:
            users = sum((money(u["cost_usd"]) for u in t["by_user"]), Decimal(0))
            assert users == money(t["cost_usd"])
        return body["window"], sum((money(t["cost_usd"]) for t in body["data"]), Decimal(0))

    # -- exports -----------------------------------------------------------------------
    def export(self, view: str, fmt: str, grouped: bool) -> tuple[Window, Decimal]:
        params = {"view": view, "format": fmt, **({"group_by": "day"} if grouped else {})}
        r = self._get("/export/usage", **params)
        window = {
            "start": r.headers["x-metis-window-start"],
            "end": r.headers["x-metis-window-end"],
        }
        assert r.headers["x-metis-view"] == view
        return window, _export_total(r.text, fmt, grouped)

    def cli_export(self, view: str, fmt: str, grouped: bool) -> tuple[Window, Decimal]:
        args = ["export", "usage", "--view", view, "--format", fmt]
        if grouped:
            args += ["--group-by", "day"]
        r = self.cli.ok(*args)
        m = re.search(r"\[(\S+), (\S+)\) \((\w+) view\)", r.stderr)
        assert m and m.group(3) == view, r.stderr
        return {"start": m.group(1), "end": m.group(2)}, _export_total(r.stdout, fmt, grouped)

    # -- metis report cost -------------------------------------------------------------
    def cli_report(self, view: str) -> tuple[Window, Decimal]:
        body = _json(self.cli.ok("report", "cost", "--view", view, "--json").stdout)
        total = money(body["total"]["cost_usd"])
        table = self.cli.ok("report", "cost", "--view", view, "--group-by", "model").stdout
        w = body["window"]
        assert f"[{w['start']}, {w['end']}) ({view} view)" in table
        row = next(line for line in table.splitlines() if "TOTAL" in line)
        cells = row.split()  # TOTAL, cost, ...: no cell holds a space
        assert money(cells[1]) == total, row
        return w, total

    # -- the dashboard -----------------------------------------------------------------
    def dashboard(self, view: str) -> tuple[Window, Decimal]:
        r = self.ui.get("/ui", params={"view": view})
        assert r.status_code == 200, r.text[:500]
        kpi = re.search(r'id="kpi-cost" data-usd="([^"]+)"', r.text)
        win = re.search(r'id="window" data-start="([^"]+)" data-end="([^"]+)"', r.text)
        assert kpi and win
        return {"start": win.group(1), "end": win.group(2)}, money(kpi.group(1))

    def all(self, view: str) -> dict[str, tuple[Window, Decimal]]:
        """Every surface's (window, total) for ``view`` over the default window."""
        out: dict[str, tuple[Window, Decimal]] = {}
        readers: dict[str, Callable[[], tuple[Window, Decimal]]] = {
            **{
                f"/analytics/cost?group_by={g}": (lambda g=g: self.cost(view, g)) for g in GROUP_BYS
            },
            "/analytics/by_team": lambda: self.by_team(view),
            "/export/usage csv grouped": lambda: self.export(view, "csv", True),
            "/export/usage jsonl grouped": lambda: self.export(view, "jsonl", True),
            "/export/usage csv rows": lambda: self.export(view, "csv", False),
            "/export/usage jsonl rows": lambda: self.export(view, "jsonl", False),
            "metis report cost": lambda: self.cli_report(view),
            "metis export usage jsonl grouped": lambda: self.cli_export(view, "jsonl", True),
            "metis export usage csv rows": lambda: self.cli_export(view, "csv", False),
            "dashboard overview": lambda: self.dashboard(view),
        }
        for name, read in readers.items():
            out[name] = read()
        return out


def _export_total(text: str, fmt: str, grouped: bool) -> Decimal:
    rows = list(csv.DictReader(io.StringIO(text))) if fmt == "csv" else _lines(text)
    if not grouped:  # the rows the view counts
        rows = [r for r in rows if str(r["counted"]).lower() == "true"]
    return sum((money(r["cost_usd"]) for r in rows), Decimal(0))
