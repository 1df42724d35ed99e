"""Month-end spend forecasts from the daily series, and their error on past months.

The method (``damped_weekly_trend``), stated wherever a forecast is shown:

1. Take the last four whole weeks (`FIT_DAYS` = 28 complete UTC days) before
   today, or as many whole weeks as there are since the first day with any
   spend (a new team is not dragged down by the zeros before it existed);
   days without spend inside them count as zero. Average each week: a weekly
   mean holds every weekday once, so a weekday/weekend rhythm cannot tilt
   the line.
2. Fit a least-squares line through the weekly means and halve its slope
   (`DAMPING`): on noisy daily spend a full slope extrapolates noise, and the
   backtests in docs/analytics.md ("Forecasts") showed the halved slope
   about as accurate as no trend on flat series and clearly better on growing
   or shrinking ones. With fewer than two whole weeks the line is flat at the
   mean of the days there are; with none at all, today's spend so far is the
   daily rate.
3. The month-end forecast is the spend of the month's complete days, plus
   today's (the larger of its spend so far and the line's value: a day in
   progress only grows), plus the line's value for every remaining day of
   the UTC month, each clipped at zero.

The arithmetic is exact (fractions of nano-USD) and the result is rounded
once, half-even, to an integer nano-USD amount.

The backtest replays the method on past months: for each of up to
`BACKTEST_MONTHS` complete months before the current one and each checkpoint
in `CHECKPOINTS` (after 7, 14 and 21 days), it forecasts from the data before
that day and compares with what the month really cost. Errors are reported
per row and summed up as the mean absolute percentage error (MAPE) and the
weighted one (WAPE = total absolute error / total actual spend).

Everything here is a pure function of a ``{day: nano-USD}`` series;
`metis.analytics.forecast_report` reads the series from the ledger and
builds the answer of ``/analytics/forecast``, ``metis report forecast`` and
the dashboard's forecast page.
"""

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from fractions import Fraction
from typing import Any

METHOD = "damped_weekly_trend"
FIT_DAYS = 28  # four whole weeks
MIN_TREND_WEEKS = 2
DAMPING = Fraction(1, 2)
CHECKPOINTS = (7, 14, 21)
BACKTEST_MONTHS = 3
METHOD_TEXT = (
    "weekly means of the last 4 whole weeks (fewer for a newer series), a least-squares line "
    "through them with its slope halved (flat under 2 weeks), extended to the end of the UTC "
    "month and added to the month's actual spend; today counts as the larger of its spend so "
    "far and the line"
)

Series = Mapping[date, int]


def month_start(d: date) -> date:
    return d.replace(day=1)


def next_month(d: date) -> date:
    """The first day of the month after ``d``'s."""
    return (d.replace(day=1) + timedelta(days=32)).replace(day=1)


def _days(start: date, end: date) -> Iterable[date]:
    """Days ``[start, end)``."""
    for i in range((end - start).days):
        yield start + timedelta(days=i)


@dataclass(frozen=True)
class Line:
    """A fitted daily rate: ``level`` nano-USD on ``origin``, plus ``slope`` per day."""

    origin: date
    level: Fraction
    slope: Fraction
    fit_days: int

    def at(self, d: date) -> Fraction:
        """The line's spend for day ``d``, never below zero."""
        return max(Fraction(0), self.level + self.slope * (d - self.origin).days)


def basis_text(fit_days: int) -> str:
    """What the line was fitted on, for people: ``4 weeks``, ``10 days``, ``today so far``."""
    if fit_days == 0:
        return "today so far"
    if fit_days % 7 == 0 and fit_days >= 14:
        return f"{fit_days // 7} weeks"
    return f"{fit_days} day" + ("s" if fit_days > 1 else "")


def first_spend_day(series: Series) -> date | None:
    days = [d for d, v in series.items() if v]
    return min(days) if days else None


def fit_line(series: Series, today: date) -> Line:
    """The damped weekly trend of the complete days before ``today`` (module docstring)."""
    first = min((d for d, v in series.items() if v and d < today), default=None)
    if first is None:
        return Line(today, Fraction(series.get(today, 0)), Fraction(0), 0)
    n_days = min(FIT_DAYS, (today - first).days)
    weeks = n_days // 7
    if weeks < MIN_TREND_WEEKS:
        start = today - timedelta(days=n_days)
        mean = Fraction(sum(series.get(d, 0) for d in _days(start, today)), n_days)
        return Line(start, mean, Fraction(0), n_days)
    start = today - timedelta(days=7 * weeks)
    sums = [
        sum(series.get(start + timedelta(days=7 * w + i), 0) for i in range(7))
        for w in range(weeks)
    ]
    # Least squares through the weekly means sums[w] / 7 at x = w, in integers: with
    # c = 2w - (weeks - 1) (twice the centred x), the slope per week is
    # 2 * sum(c * sums) / (7 * sum(c^2)); per day divide by 7, then damp.
    c = [2 * w - (weeks - 1) for w in range(weeks)]
    slope = (
        Fraction(
            2 * sum(ci * si for ci, si in zip(c, sums, strict=True)), 49 * sum(x * x for x in c)
        )
        * DAMPING
    )
    mean_y = Fraction(sum(sums), 7 * weeks)
    center = Fraction(7 * weeks - 1, 2)  # days from ``start`` to the middle of the span
    return Line(start, mean_y - slope * center, slope, 7 * weeks)


@dataclass(frozen=True)
class MonthForecast:
    """One series' month: actual so far, the forecast, and the line behind it."""

    today: date
    start: date  # first day of the month
    end: date  # first day of the next month
    month_to_date_nanousd: int  # complete days + today so far
    forecast_nanousd: int  # the whole month
    line: Line
    days: tuple[tuple[date, int, bool], ...]  # (day, spend, is_forecast) for every day

    @property
    def daily_rate_nanousd(self) -> int:
        """The line's value today (the current daily rate)."""
        return round(self.line.at(self.today))


def _round_half_even(num: int, den: int) -> int:
    """``round(num / den)`` (half to even) in integers; ``den > 0``."""
    q, r = divmod(num, den)
    twice = 2 * r
    return q + 1 if twice > den or (twice == den and q % 2) else q


def forecast_month(series: Series, today: date) -> MonthForecast:
    """The month-end forecast of ``series`` as of ``today`` (see the module docstring)."""
    start, end = month_start(today), next_month(today)
    line = fit_line(series, today)
    # Integer arithmetic over a common denominator: the line's value on day k
    # (from its origin) is (ln + sn * k) / den; a Fraction per day was the cost.
    den = math.lcm(line.level.denominator, line.slope.denominator)
    ln = line.level.numerator * (den // line.level.denominator)
    sn = line.slope.numerator * (den // line.slope.denominator)
    days: list[tuple[date, int, bool]] = []  # values times ``den``
    k = (start - line.origin).days
    for d in _days(start, end):
        actual = series.get(d, 0) * den
        predicted = max(0, ln + sn * k)
        if d < today:
            days.append((d, actual, False))
        elif d == today:
            days.append((d, max(actual, predicted), predicted > actual))
        else:
            days.append((d, predicted, True))
        k += 1
    total = sum(v for _, v, _ in days)
    mtd = sum(series.get(d, 0) for d in _days(start, today + timedelta(days=1)))
    return MonthForecast(
        today=today,
        start=start,
        end=end,
        month_to_date_nanousd=mtd,
        forecast_nanousd=_round_half_even(total, den),
        line=line,
        days=tuple((d, _round_half_even(v, den), f) for d, v, f in days),
    )


def breach_day(mf: MonthForecast, cap_nanousd: int) -> date | None:
    """The first day the month's spend (actual, then forecast) reaches ``cap_nanousd``."""
    total = 0
    for d, v, _ in mf.days:
        total += v
        if total >= cap_nanousd:
            return d
    return None


@dataclass(frozen=True)
class BacktestPoint:
    month: date  # first day of the month
    known_days: int  # the forecast was made after this many days of the month
    forecast_nanousd: int
    actual_nanousd: int

    @property
    def abs_error(self) -> int:
        return abs(self.forecast_nanousd - self.actual_nanousd)

    @property
    def error_pct(self) -> Fraction | None:
        """Signed error in percent of the actual (None when the month cost nothing)."""
        if self.actual_nanousd == 0:
            return None
        return Fraction(self.forecast_nanousd - self.actual_nanousd, self.actual_nanousd) * 100


def backtest(
    series: Series, months: Iterable[date], checkpoints: Iterable[int] = CHECKPOINTS
) -> list[BacktestPoint]:
    """Replay `forecast_month` at each checkpoint of each month (first days) given."""
    out = []
    for m in months:
        actual = sum(series.get(d, 0) for d in _days(m, next_month(m)))
        for k in checkpoints:
            as_of = m + timedelta(days=k)
            if as_of >= next_month(m):
                continue
            known = {d: v for d, v in series.items() if d < as_of}
            out.append(BacktestPoint(m, k, forecast_month(known, as_of).forecast_nanousd, actual))
    return out


def error_summary(points: Iterable[BacktestPoint]) -> dict[int, dict[str, Any]]:
    """Per checkpoint: MAPE and WAPE in percent (Fractions) and how many points."""
    by_k: dict[int, list[BacktestPoint]] = defaultdict(list)
    for p in points:
        if p.actual_nanousd > 0:
            by_k[p.known_days].append(p)
    out: dict[int, dict[str, Any]] = {}
    for k, ps in sorted(by_k.items()):
        pcts = [abs(p.error_pct) for p in ps if p.error_pct is not None]
        out[k] = {
            "points": len(ps),
            "mape_pct": sum(pcts, Fraction(0)) / len(pcts),
            "wape_pct": Fraction(sum(p.abs_error for p in ps), sum(p.actual_nanousd for p in ps))
            * 100,
        }
    return out
