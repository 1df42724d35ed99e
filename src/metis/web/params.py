"""The filters every dashboard page shares: date range, workspace, view, chart stacking.

Dates are whole UTC days with the meaning they have everywhere else in Metis
(the analytics API, exports, the CLI): ``from`` inclusive, ``to``
exclusive, so ``?from=2026-11-29&to=2026-12-06`` is the same seven days on
a page and in ``/analytics/cost``. The default is the one definition of
"the last 7 days", `metis.analytics.params.default_window` (7 whole UTC days
ending with today); every page prints the resolved window. Bad values raise
`UIError` (400) naming the field, before any query runs.
"""

from dataclasses import dataclass
from datetime import date, timedelta
from urllib.parse import urlencode

from sqlalchemy import Connection

from metis.analytics.params import (
    DEFAULT_DAYS,
    Filters,
    ParamError,
    Window,
    default_window,
    resolve_workspace,
)
from metis.analytics.views import View, parse_view
from metis.timeutil import OutOfRange, check_day, day_start, utcnow

MAX_DAYS = 366
STACKS = ("team", "source")
DEFAULT_BASELINE = "openai:gpt-4o"


class UIError(Exception):
    """A problem to show the user as an HTML error page with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class PageQuery:
    """Parsed shared filters; ``workspace`` is as given, ``workspace_id`` resolved."""

    start: date
    end: date  # exclusive
    workspace: str | None
    workspace_id: str | None
    view: View
    stack: str
    today: date
    baseline: str = DEFAULT_BASELINE  # the savings page's provider:model

    @property
    def window(self) -> Window:
        return Window(day_start(self.start), day_start(self.end))

    @property
    def last(self) -> date:
        """The last day in range (``end`` is exclusive)."""
        return self.end - timedelta(days=1)

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    @property
    def includes_today(self) -> bool:
        """Whether today, a day still in progress, is in the range."""
        return self.start <= self.today < self.end

    @property
    def filters(self) -> Filters:
        return Filters(workspace_id=self.workspace_id)

    def params(self, **override: str | None) -> dict[str, str]:
        """The query parameters that reproduce this page state (with overrides)."""
        out: dict[str, str | None] = {
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "workspace": self.workspace,
            "view": self.view,
            "stack": self.stack,
            "baseline": None if self.baseline == DEFAULT_BASELINE else self.baseline,
        }
        out.update(override)
        return {k: v for k, v in out.items() if v}

    def qs(self, **override: str | None) -> str:
        return urlencode(self.params(**override))

    def presets(self) -> list[tuple[str, str, bool]]:
        """Quick ranges: (label, query string, whether it is the current range)."""
        t = self.today
        end = t + timedelta(days=1)
        ranges = [
            ("7 days", end - timedelta(days=7), end),
            ("30 days", end - timedelta(days=30), end),
            ("90 days", end - timedelta(days=90), end),
            ("this month", t.replace(day=1), end),
        ]
        return [
            (
                label,
                self.qs(**{"from": a.isoformat(), "to": b.isoformat()}),
                (a, b) == (self.start, self.end),
            )
            for label, a, b in ranges
        ]


def _date(value: str, field: str) -> date:
    try:
        if len(value) != 10:
            raise ValueError
        d = date.fromisoformat(value)
    except ValueError:
        raise UIError(400, f"{field} must be a date YYYY-MM-DD (got {value[:40]!r})") from None
    try:
        return check_day(d, field)  # the supported range (metis.timeutil): never an overflow
    except OutOfRange as exc:
        raise UIError(400, str(exc)) from None


def parse_page_query(
    conn: Connection,
    *,
    start: str | None,
    end: str | None,
    workspace: str | None,
    view: str | None,
    stack: str | None,
    today: date | None = None,
    baseline: str | None = None,
) -> PageQuery:
    """Validate and resolve the shared filters (see module docstring)."""
    today = today or utcnow().date()
    default = default_window(day_start(today))
    end_d = _date(end, "to") if end else default.end.date()
    start_d = _date(start, "from") if start else end_d - timedelta(days=DEFAULT_DAYS)
    if start_d >= end_d:
        raise UIError(400, "from must be before to (to is exclusive)")
    if (end_d - start_d).days > MAX_DAYS:
        raise UIError(400, f"date range longer than {MAX_DAYS} days")
    if stack and stack not in STACKS:
        raise UIError(400, f"stack must be one of {', '.join(STACKS)}")
    try:
        v = parse_view(view)
        ws_id = resolve_workspace(conn, workspace) if workspace else None
    except ParamError as exc:
        raise UIError(400, exc.message) from None
    if baseline is not None and len(baseline) > 200:
        raise UIError(400, "baseline must be provider:model (at most 200 characters)")
    return PageQuery(
        start_d, end_d, workspace or None, ws_id, v, stack or "team", today,
        baseline or DEFAULT_BASELINE,
    )  # fmt: skip
