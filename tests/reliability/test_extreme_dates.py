"""Extreme dates are a 400 or a CLI error naming the parameter, never a 500 or a traceback.

Issue 19 item 4: ``?to=0001-01-01`` or ``?to=9999-12-31T23:59:59Z`` on every
analytics and export route and on the dashboard pages answered 500
(``OverflowError: date value out of range``), and ``metis export usage --to
0001-01-01`` printed a traceback. Routes are read from the server's own
OpenAPI document, so a new route with a ``from``/``to`` parameter is covered
without editing this file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine

from metis.analytics.admin_tokens import create_token
from metis.analytics.params import ParamError, parse_window
from metis.server import create_app
from metis.util.server_thread import ServerThread
from metis.web.http import NAV
from tests.conftest import Cli
from tests.fuzz.settings import fuzz_settings

EXTREMES = ("0001-01-01", "9999-12-31T23:59:59Z", "9999-12-31", "0001-01-01T00:00:00+01:00")
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
def server(metis_env: dict[str, str], engine: Engine) -> Iterator[tuple[str, str]]:
    with engine.begin() as conn:
        token = create_token(conn, "dates")[1]
    with ServerThread(create_app()) as srv:
        yield srv.url, token


def _dated_routes(client: httpx.Client) -> list[tuple[str, set[str]]]:
    """(path, names of its date parameters) of every GET operation that takes from/to."""
    doc = client.get("/openapi.json").json()
    out = []
    for path, ops in doc["paths"].items():
        get = ops.get("get")
        if not get or "{" in path:
            continue
        names = {p["name"] for p in get.get("parameters", []) if p["in"] == "query"}
        dated = names & {"from", "to"}
        if dated:
            out.append((path, dated))
    return out


def test_extreme_dates_on_every_api_route_are_a_400(server: tuple[str, str]) -> None:
    url, token = server
    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as client:
        routes = _dated_routes(client)
        paths = {p for p, _ in routes}
        # The analytics, reconciliation and export routes are all here.
        assert {"/analytics/cost", "/analytics/reconciliation", "/export/usage"} <= paths
        assert len(routes) >= 8, routes
        for path, params in routes:
            for name in sorted(params):
                for value in EXTREMES:
                    r = client.get(path, params={name: value})
                    assert r.status_code == 400, (path, name, value, r.status_code, r.text)
                    body = r.json()
                    info = body.get("detail", body)
                    assert info["error"] == "invalid_window", (path, body)
                    assert info["message"].startswith(name + " "), (path, name, body)
        # The grouped export too (its grouping is parsed with the window).
        r = client.get("/export/usage", params={"to": "0001-01-01", "group_by": "model"})
        assert r.status_code == 400, r.text
        # The edges of the supported range are accepted.
        r = client.get("/analytics/cost", params={"from": "2000-01-01", "to": "2000-01-08"})
        assert r.status_code == 200, r.text
        r = client.get(
            "/analytics/cost", params={"from": "2199-12-25", "to": "2200-01-01T00:00:00Z"}
        )
        assert r.status_code == 200, r.text


def test_extreme_dates_on_every_dashboard_page_are_a_400(server: tuple[str, str]) -> None:
    url, token = server
    with httpx.Client(base_url=url, timeout=30) as ui:
        m = CSRF_RE.search(ui.get("/ui/login").text)
        assert m
        r = ui.post("/ui/login", data={"csrf": m.group(1), "token": token, "next": "/ui"})
        assert r.status_code == 303, r.text
        assert len(NAV) >= 8  # every page of the nav, issue 20's included
        for _, path, _ in NAV:
            for name in ("from", "to"):
                for value in ("0001-01-01", "9999-12-31", "9999-12-31T23:59:59Z"):
                    params = {name: value}
                    if name == "from":
                        params["to"] = "9999-12-31"
                    r = ui.get(path, params=params)
                    assert r.status_code == 400, (path, params, r.status_code)
                    assert "text/html" in r.headers["content-type"]
                    assert f"{name} must be" in r.text or "to must be" in r.text, (path, r.text)
            ok = ui.get(path, params={"from": "2000-01-01", "to": "2000-01-07"})
            assert ok.status_code == 200, (path, ok.text)


@pytest.mark.parametrize(
    "args",
    [
        ["export", "usage", "--to", "0001-01-01"],
        ["export", "usage", "--to", "9999-12-31T23:59:59Z", "--group-by", "model"],
        ["export", "audit", "--from", "0001-01-01"],
        ["report", "cost", "--to", "9999-12-31T23:59:59Z"],
        ["db", "rebuild-rollups", "--from", "0001-01-01"],
        ["db", "rebuild-rollups", "--to", "9999-12-31"],
    ],
)
def test_extreme_dates_on_the_cli_are_one_line_errors(cli: type[Cli], args: list[str]) -> None:
    cli.ok("init")
    r = cli.run(*args)
    assert r.exit_code != 0, r.output
    assert "Traceback" not in r.output
    assert r.stderr.startswith("error: "), r.output
    assert "must be" in r.stderr and "2000-01-01" in r.stderr, r.output


@pytest.mark.parametrize(
    "args",
    [
        ["db", "prune", "--retention-days", "999999999"],
        ["ingest", "sync", "--days", "999999999"],
        ["ingest", "backfill", "--days", "999999999"],
    ],
)
def test_huge_day_counts_on_the_cli_are_usage_errors(cli: type[Cli], args: list[str]) -> None:
    cli.ok("init")
    r = cli.run(*args)
    assert r.exit_code == 2, r.output  # click's usage error: the range is named
    assert "Traceback" not in r.output
    assert f"Invalid value for '{args[2]}'" in r.output, r.output


def test_huge_retention_setting_is_a_config_error(
    cli: type[Cli], monkeypatch: pytest.MonkeyPatch
) -> None:
    cli.ok("init")
    monkeypatch.setenv("METIS_RETENTION_DAYS", "999999999")
    r = cli.run("db", "prune")
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert "METIS_RETENTION_DAYS is invalid" in r.stderr, r.output


_ANY_TIME = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)
).map(lambda d: d.isoformat())
_OFFSET = st.sampled_from(["", "Z", "+00:00", "+23:59", "-23:59", "+05:30"])


@given(start=st.none() | (_ANY_TIME.flatmap(lambda t: _OFFSET.map(lambda o: t + o))),
       end=st.none() | (_ANY_TIME.flatmap(lambda t: _OFFSET.map(lambda o: t + o))))  # fmt: skip
@fuzz_settings(300)
def test_parse_window_raises_nothing_but_param_errors(start: str | None, end: str | None) -> None:
    """Any ISO 8601 time Python can represent, with any offset: a window or a ParamError."""
    now = datetime(2026, 11, 5, 12, tzinfo=UTC)
    try:
        w = parse_window(start, end, now=now)
    except ParamError as exc:
        assert exc.code == "invalid_window"
        return
    assert datetime(1999, 12, 25, tzinfo=UTC) <= w.start < w.end
    assert w.end <= datetime(2200, 1, 1, tzinfo=UTC)
