"""The dashboard in a real headless Chromium against ``metis demo``.

Drives Debian's ``chromium`` through ``chromium-driver`` (Selenium; no browser
download): logs in with the demo's admin token, visits every page, checks
that the figures shown equal the admin API's answers for the same range,
issues a key through the form (and uses it on the gateway), revokes it
through the UI (and sees the gateway refuse it), and asserts that no page
logs a console error. Every page is laid out at three desktop widths (1280,
1400, 1920 px) and a 390 px phone: the page must not scroll sideways, no
table may be wider than its card (a clipped column fails the test, naming
the table), and on the phone the chart must be its narrow drawing with
labels at least 10 px tall. Screenshots of each page at 1280×800 and 390×844
are saved.

Screenshots go to ``$METIS_SCREENSHOT_DIR`` when set, else to pytest's
temporary directory. Those files are docs/img/dashboard-<page>-desktop.png
and -phone.png, and ``dashboard-overview.png`` (the whole overview page at
1280 px) is the README's picture (see docs/dashboard.md).
"""

import os
import time
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from metis.web.tables import fmt_cell, fmt_usd
from tests.plugins.demo import DemoProcess

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
DESKTOP = (1280, 800)
WIDTHS = ((1400, 900), (1920, 1080))  # also checked for clipping, not photographed
PHONE = (390, 844)
PAGES = {
    "overview": "/ui",
    "teams": "/ui/teams",
    "keys": "/ui/keys",
    "forecast": "/ui/forecast",
    "savings": "/ui/savings",
    "routing": "/ui/routing",
    "reconciliation": "/ui/reconciliation",
    "ingestion": "/ui/ingestion",
}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
        reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium "
        "chromium-driver; .ci/run installs them)",
    ),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-extensions",
        "--hide-scrollbars",
        f"--window-size={DESKTOP[0]},{DESKTOP[1]}",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = os.environ.get("METIS_SCREENSHOT_DIR")
    path = Path(d) if d else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


# ---------------------------------------------------------------- helpers


def _by(kind: str) -> Any:
    from selenium.webdriver.common.by import By

    return getattr(By, kind)


def console_errors(driver: Any) -> list[str]:
    """Console entries at SEVERE level since the last call (errors, failed loads, CSP)."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def set_size(driver: Any, size: tuple[int, int]) -> None:
    """Make the *viewport* (not the window) this size, so a screenshot is exactly it."""
    driver.set_window_size(*size)
    inner = driver.execute_script("return [window.innerWidth, window.innerHeight]")
    driver.set_window_size(size[0] * 2 - inner[0], size[1] * 2 - inner[1])


def overflow(driver: Any) -> int:
    """How many CSS pixels the page is wider than the viewport (0 = no horizontal scroll)."""
    return int(
        driver.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
    )


def click_and_wait(driver: Any, element: Any) -> None:
    """Click a link or submit button and wait until the next page has replaced this one."""
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.wait import WebDriverWait

    old = driver.find_element(_by("TAG_NAME"), "html")
    element.click()
    WebDriverWait(driver, 30).until(ec.staleness_of(old))
    WebDriverWait(driver, 30).until(
        lambda drv: drv.execute_script("return document.readyState") == "complete"
    )


def visit(driver: Any, url: str) -> None:
    driver.get(url)
    assert driver.find_element(_by("TAG_NAME"), "h1").text
    errors = console_errors(driver)
    assert not errors, f"console errors on {url}: {errors}"


def usd_attr(el: Any) -> Decimal:
    """The exact figure of a money cell, after checking the shown text is its rounding."""
    exact = Decimal(el.get_attribute("data-usd"))
    assert el.text == fmt_usd(exact), (el.text, exact)
    return exact


def table_rows(driver: Any, table: str) -> list[dict[str, Any]]:
    """Rows of ``table`` as {column key: cell element}."""
    rows = []
    for tr in driver.find_elements(_by("CSS_SELECTOR"), f'table[data-table="{table}"] tbody tr'):
        cells = tr.find_elements(_by("CSS_SELECTOR"), "td[data-col]")
        rows.append({c.get_attribute("data-col"): c for c in cells})
    return rows


def api_json(demo: DemoProcess, path: str, **params: str) -> Any:
    r = demo.api(path, **params)
    assert r.status_code == 200, r.text
    return r.json(parse_float=Decimal)


def page_range(driver: Any) -> tuple[date, date]:
    """The day range the page shows (from its date inputs): ``from`` inclusive, ``to`` not."""
    start = driver.find_element(_by("NAME"), "from").get_attribute("value")
    end = driver.find_element(_by("NAME"), "to").get_attribute("value")
    return date.fromisoformat(start), date.fromisoformat(end)


def api_window(start: date, end: date) -> dict[str, str]:
    return {"from": f"{start.isoformat()}T00:00:00Z", "to": f"{end.isoformat()}T00:00:00Z"}


def gateway_status(base: str, secret: str, want: int, timeout: float = 5.0) -> int:
    """GET /v1/models with ``secret`` until it answers ``want`` (or time is up): its status."""
    deadline = time.monotonic() + timeout
    while True:
        r = httpx.get(base + "/v1/models", headers={"Authorization": f"Bearer {secret}"})
        if r.status_code == want or time.monotonic() > deadline:
            return r.status_code
        time.sleep(0.1)


CLIPPED_TABLES = """
document.querySelectorAll('details').forEach(d => { d.open = true; });
return Array.from(document.querySelectorAll('.table-wrap'))
  .filter(w => w.scrollWidth > w.clientWidth)
  .map(w => `${w.closest('section').id}: ${w.scrollWidth}px of content in ${w.clientWidth}px`);
"""

PHONE_CHART = """
const wide = document.querySelector('svg.chart.wide');
const narrow = document.querySelector('svg.chart.narrow');
if (!wide) return null;
const label = narrow.querySelector('text');
return [getComputedStyle(wide).display, getComputedStyle(narrow).display,
        label ? label.getBoundingClientRect().height : 0];
"""


def check_layout(driver: Any, name: str, size: tuple[int, int]) -> None:
    """No sideways scroll, no table wider than its card; on a phone, the narrow chart."""
    set_size(driver, size)
    assert overflow(driver) <= 0, f"{name} overflows horizontally at {size}"
    clipped = driver.execute_script(CLIPPED_TABLES)
    assert not clipped, f"{name} at {size[0]} px clips tables: {clipped}"
    chart = driver.execute_script(PHONE_CHART)
    if chart is not None and size == PHONE:
        wide, narrow, label_px = chart
        assert (wide, narrow) == ("none", "block"), chart
        assert label_px >= 10, f"{name}: chart labels {label_px:.1f} px tall on a phone"
    elif chart is not None:
        assert chart[:2] == ["block", "none"], chart


def screenshot(driver: Any, shots: Path, name: str) -> None:
    """Check the layout at every width; save the desktop and phone screenshots."""
    for size in WIDTHS:
        check_layout(driver, name, size)
    for size, tag in ((DESKTOP, "desktop"), (PHONE, "phone")):
        check_layout(driver, name, size)
        # the phone shot starts at the page title: the content, not the navigation above it
        driver.execute_script(
            "window.scrollTo(0, 0)"
            if tag == "desktop"
            else "document.querySelector('h1').scrollIntoView()"
        )
        driver.save_screenshot(str(shots / f"dashboard-{name}-{tag}.png"))
    set_size(driver, DESKTOP)


# ---------------------------------------------------------------- the test


def test_dashboard_in_chromium(browser: Any, demo_server: DemoProcess, shots: Path) -> None:
    try:
        walk_through(browser, demo_server, shots)
    except Exception:
        # leave what the browser saw next to the screenshots, for a failure in CI
        browser.save_screenshot(str(shots / "failure.png"))
        (shots / "failure.html").write_text(browser.page_source)
        print(f"browser was at {browser.current_url}; see {shots}/failure.png")
        raise


def walk_through(d: Any, demo_server: DemoProcess, shots: Path) -> None:
    """Every step of the test above (see the module docstring)."""
    base = demo_server.url
    console_errors(d)  # drop anything from before

    # Not signed in: the dashboard sends the browser to the login page.
    d.get(demo_server.dashboard_url + "/teams")
    assert "/ui/login" in d.current_url
    d.find_element(_by("NAME"), "token").send_keys(demo_server.admin_token)
    click_and_wait(d, d.find_element(_by("CSS_SELECTOR"), "form.login button[type=submit]"))
    assert d.current_url.startswith(base + "/ui/teams")
    assert not console_errors(d)

    # Overview: KPI and top tables equal /analytics/cost for the page's range.
    visit(d, base + PAGES["overview"])
    start, end = page_range(d)
    win = api_window(start, end)
    # the page's default range is the API's default window, and the page says which it is
    shown = d.find_element(_by("ID"), "window")
    default = api_json(demo_server, "/analytics/cost")["window"]
    assert (
        (shown.get_attribute("data-start"), shown.get_attribute("data-end"))
        == (
            default["start"],
            default["end"],
        )
        == (win["from"], win["to"])
    )
    cost = api_json(demo_server, "/analytics/cost", group_by="model", **win)
    assert usd_attr(d.find_element(_by("ID"), "kpi-cost")) == cost["total"]["cost_usd"]
    # a day the provider reported before it ended is shown as a lower bound "as of sync"
    notes = {
        n.get_attribute("data-day"): n.text
        for n in d.find_elements(_by("CSS_SELECTOR"), "p.note.lagging")
    }
    assert set(notes) == {lag["day"] for lag in cost["provider_lagging"]}
    assert all("as of sync" in text for text in notes.values())
    assert cost["total"]["cost_usd"] > 0, "the demo has spend in the default range"
    models = table_rows(d, "top_models")
    assert [(r["model"].text, usd_attr(r["cost_usd"])) for r in models] == [
        (m["model"], m["cost_usd"]) for m in cost["data"][:10]
    ]
    users = api_json(demo_server, "/analytics/cost", group_by="user", **win)
    assert [usd_attr(r["cost_usd"]) for r in table_rows(d, "top_users")] == [
        u["cost_usd"] for u in users["data"][:10]
    ]
    assert d.find_elements(_by("CSS_SELECTOR"), "svg.chart rect")  # the chart has bars
    screenshot(d, shots, "overview")
    full_height = int(d.execute_script("return document.documentElement.scrollHeight"))
    set_size(d, (DESKTOP[0], full_height))
    d.save_screenshot(str(shots / "dashboard-overview.png"))  # the README's picture
    set_size(d, DESKTOP)

    # Teams: spend in range and caps equal /analytics/by_team.
    visit(d, base + PAGES["teams"] + f"?from={start}&to={end}")
    by_team = {
        t["team_name"]: t for t in api_json(demo_server, "/analytics/by_team", **win)["data"]
    }
    rows = table_rows(d, "teams")
    assert rows
    for r in rows:
        api_team = by_team.get(r["team"].text)
        assert usd_attr(r["cost_usd"]) == (api_team["cost_usd"] if api_team else 0)
        if api_team and api_team["daily_cap_usd"] is not None:
            assert f"of {fmt_usd(api_team['daily_cap_usd'])}" in r["daily_bar"].text
    assert d.find_elements(_by("CSS_SELECTOR"), "td.bar svg")  # cap bars drawn
    screenshot(d, shots, "teams")

    # Keys and users: per-key spend equals /analytics/by_key.
    visit(d, base + PAGES["keys"] + f"?from={start}&to={end}")
    by_key = {k["key_id"]: k for k in api_json(demo_server, "/analytics/by_key", **win)["data"]}
    for r in table_rows(d, "keys"):
        kid = r["key_id"].text
        assert usd_attr(r["cost_usd"]) == (by_key[kid]["cost_usd"] if kid in by_key else 0)
    screenshot(d, shots, "keys")

    # Issue a key through the form; the secret is shown once and works on the gateway.
    d.find_element(_by("CSS_SELECTOR"), "form.issue input[name=name]").send_keys("browser-test")
    click_and_wait(d, d.find_element(_by("CSS_SELECTOR"), "form.issue button[type=submit]"))
    secret = d.find_element(_by("ID"), "secret").text
    assert secret.startswith("gw_")
    assert not console_errors(d)
    # the gateway's key cache follows the identity version within about a second
    assert gateway_status(base, secret, want=200) == 200
    click_and_wait(d, d.find_element(_by("LINK_TEXT"), "Back to keys"))
    assert secret not in d.page_source
    row = next(r for r in table_rows(d, "keys") if r["name"].text == "browser-test")
    key_id = row["key_id"].text
    tr = row["name"].find_element(_by("XPATH"), "..")
    tr.find_element(_by("CSS_SELECTOR"), "input[name=reason]").send_keys("browser test")
    click_and_wait(d, tr.find_element(_by("CSS_SELECTOR"), "button.danger"))
    flash = d.find_element(_by("CSS_SELECTOR"), "p.flash").text
    assert flash == f"Key browser-test ({key_id}) revoked"
    row = next(r for r in table_rows(d, "keys") if r["key_id"].text == key_id)
    assert row["status"].text == "revoked"
    assert gateway_status(base, secret, want=401) == 401
    assert not console_errors(d)

    # Reconciliation: the totals row equals /analytics/reconciliation.
    visit(d, base + PAGES["reconciliation"] + f"?from={start}&to={end}")
    recon = api_json(
        demo_server,
        "/analytics/reconciliation",
        **{"from": str(start), "to": str(end)},
    )
    foot = {
        c.get_attribute("data-col"): c
        for c in d.find_elements(
            _by("CSS_SELECTOR"), 'table[data-table="reconciliation"] tfoot td[data-col]'
        )
    }
    for col, name in (
        ("reconciled_usd", "reconciled"),
        ("unattributed_usd", "unattributed"),
        ("drift_usd", "drift"),
    ):
        nanos = recon["totals"][name]["cost_nanousd"]
        assert usd_attr(foot[col]) * 10**9 == nanos, name
    assert d.find_elements(_by("CSS_SELECTOR"), "tr.unattributed")  # highlighted rows
    screenshot(d, shots, "reconciliation")

    # Ingestion: each credential's cursor equals /analytics/ingest.
    visit(d, base + PAGES["ingestion"] + f"?from={start}&to={end}")
    ingest = {
        c["credential_id"]: c for c in api_json(demo_server, "/analytics/ingest", **win)["data"]
    }
    rows = table_rows(d, "credentials")
    assert {r["credential_id"].text for r in rows} == set(ingest)
    for r in rows:
        want = ingest[r["credential_id"].text]
        assert r["complete_through"].text == fmt_cell("datetime", want["complete_through"])
        assert r["last_success_at"].text == fmt_cell("datetime", want["last_success_at"])
        # today is never a complete day, however often it was synced
        complete, days = (int(x) for x in r["days_synced"].text.split("/"))
        assert days == (end - start).days and complete < days
        if r["days_in_progress"].text not in ("", "—"):  # an empty cell shows a dash
            assert "as of sync" in r["days_in_progress"].text
    assert d.find_elements(_by("XPATH"), "//button[text()='Sync now']")
    screenshot(d, shots, "ingestion")

    # Forecast: this month so far and its forecast equal /analytics/forecast.
    visit(d, base + PAGES["forecast"])
    fc = api_json(demo_server, "/analytics/forecast", by="team")
    assert usd_attr(d.find_element(_by("ID"), "kpi-forecast")) == fc["total"]["forecast_usd"]
    assert usd_attr(d.find_element(_by("ID"), "kpi-mtd")) == fc["total"]["month_to_date_usd"]
    shown = {r["id"].text: usd_attr(r["forecast_usd"]) for r in table_rows(d, "forecast_team")}
    assert shown == {t["team_id"] or "—": t["forecast_usd"] for t in fc["data"]}
    assert "Weekly means" in d.find_element(_by("ID"), "method").text
    screenshot(d, shots, "forecast")

    # Savings and cache: the KPIs equal /analytics/savings for the range.
    visit(d, base + PAGES["savings"] + f"?from={start}&to={end}")
    sv = api_json(demo_server, "/analytics/savings", **win)
    assert usd_attr(d.find_element(_by("ID"), "kpi-savings")) == sv["savings_usd"]
    assert usd_attr(d.find_element(_by("ID"), "kpi-actual")) == sv["actual_cost_usd"]
    assert table_rows(d, "savings") and table_rows(d, "cache")
    screenshot(d, shots, "savings")

    # Routing and reliability: decisions and per-model calls equal the API.
    visit(d, base + PAGES["routing"] + f"?from={start}&to={end}")
    rt = api_json(demo_server, "/analytics/routing", **win)["data"]
    assert d.find_element(_by("ID"), "kpi-decisions").text == fmt_cell("int", rt["decisions"])
    rel = api_json(demo_server, "/analytics/reliability", **win)["data"]
    assert [(r["model"].text, r["calls"].text) for r in table_rows(d, "reliability")] == [
        (x["model"], fmt_cell("int", x["calls"])) for x in rel
    ]
    assert table_rows(d, "rule_hits")  # the demo's soft-cap rule fired
    screenshot(d, shots, "routing")

    # Sign out: the session is gone.
    click_and_wait(d, d.find_element(_by("CSS_SELECTOR"), "form.logout button"))
    assert "/ui/login" in d.current_url
    d.get(base + "/ui")
    assert "/ui/login" in d.current_url
    assert not console_errors(d)


def _rendered(driver: Any, css: str, text: str, timeout: float = 30.0) -> None:
    from selenium.webdriver.support.wait import WebDriverWait

    WebDriverWait(driver, timeout).until(
        lambda drv: any(text in e.text for e in drv.find_elements(_by("CSS_SELECTOR"), css))
    )


def test_api_docs_render_offline_under_their_csp(browser: Any, demo_server: DemoProcess) -> None:
    """/docs renders from this server's own assets: no CDN, no CSP violation."""
    base = demo_server.url
    console_errors(browser)
    browser.get(base + "/docs")
    _rendered(browser, ".swagger-ui .info .title", "Metis API")
    # the operations are listed: the document was loaded and parsed
    _rendered(browser, ".opblock-summary-path", "/analytics/cost")
    loaded = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert loaded and all(u.startswith(base + "/") for u in loaded), loaded
    errors = console_errors(browser)
    assert not errors, f"console errors on /docs: {errors}"
    # an operation opens (Swagger UI's own scripts run under the policy)
    from selenium.webdriver.support.wait import WebDriverWait

    summary = browser.find_element(_by("CSS_SELECTOR"), ".opblock-summary")
    summary.click()
    WebDriverWait(browser, 30).until(
        lambda drv: drv.find_elements(_by("CSS_SELECTOR"), ".opblock.is-open")
    )
    assert not console_errors(browser)
