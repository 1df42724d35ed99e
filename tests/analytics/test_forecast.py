"""The forecast method on generated series with known shapes (metis.analytics.forecast).

Exact cases first (a linear trend is extended exactly, to the nano-USD), then
noisy ones with a fixed seed and a bound on the error, then properties.
"""

import random
from datetime import date, timedelta
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from metis.analytics.forecast import (
    FIT_DAYS,
    backtest,
    breach_day,
    error_summary,
    fit_line,
    forecast_month,
    next_month,
)

TODAY = date(2026, 11, 18)  # a 30-day month; 17 complete days before today
USD = 1_000_000_000


def linear(a: int, b: int, start: date, end: date) -> dict[date, int]:
    """``a + b * i`` nano-USD on the i-th day from ``start``, for days ``[start, end)``."""
    return {start + timedelta(days=i): a + b * i for i in range((end - start).days)}


def expected_on_a_line(a: int, b: int, start: date, today: date, weeks: int = 4) -> Fraction:
    """The method worked by hand for ``a + b*i``: weekly means lie on the line, the slope is
    halved, and the damped line runs through the middle of the fitted weeks."""
    c = Fraction((today - start).days) - Fraction(7 * weeks + 1, 2)  # index of the middle
    level = a + b * c
    total = Fraction(0)
    for d in (today.replace(day=1) + timedelta(days=i) for i in range(30)):
        i = (d - start).days
        if d < today:
            total += a + b * i
        else:
            total += max(Fraction(0), level + Fraction(b, 2) * (i - c))
    return total


def test_a_linear_trend_is_followed_with_half_its_slope() -> None:
    start = TODAY - timedelta(days=60)
    a, b = 10 * USD, USD // 4  # $10/day growing $0.25 a day
    series = linear(a, b, start, TODAY)
    f = forecast_month(series, TODAY)
    assert f.line.slope == Fraction(b, 2) and f.line.fit_days == FIT_DAYS
    assert f.forecast_nanousd == round(expected_on_a_line(a, b, start, TODAY))
    # between the month on a flat line at the last weeks' mean and the month on the full trend
    full = sum(a + b * (d - start).days for d in (date(2026, 11, 1) + timedelta(days=i)
                                                  for i in range(30)))  # fmt: skip
    assert f.month_to_date_nanousd < f.forecast_nanousd < full
    assert f.month_to_date_nanousd == sum(v for d, v in series.items() if d.month == 11)
    assert [x for _, _, x in f.days] == [False] * 17 + [True] * 13


def test_a_weekly_rhythm_does_not_tilt_the_line() -> None:
    # Weekdays $10, weekends $2, no trend: every weekly mean is the same.
    series = {
        TODAY - timedelta(days=i): (2 if (TODAY - timedelta(days=i)).weekday() >= 5 else 10) * USD
        for i in range(1, 60)
    }
    f = forecast_month(series, TODAY)
    assert f.line.slope == 0 and f.line.level == Fraction(54 * USD, 7)
    complete = sum(v for d, v in series.items() if d.month == 11)
    assert f.forecast_nanousd == round(complete + 13 * Fraction(54 * USD, 7))


def test_today_counts_as_what_it_spent_when_that_is_more_than_the_line() -> None:
    series = {TODAY - timedelta(days=i): 5 * USD for i in range(1, 40)}
    assert forecast_month(series, TODAY).forecast_nanousd == 30 * 5 * USD
    series[TODAY] = 9 * USD  # a busy morning
    f = forecast_month(series, TODAY)
    assert f.forecast_nanousd == 30 * 5 * USD + 4 * USD
    assert f.month_to_date_nanousd == 17 * 5 * USD + 9 * USD


def test_a_new_series_uses_a_flat_mean_then_todays_spend() -> None:
    few = {TODAY - timedelta(days=i): v * USD for i, v in ((1, 3), (2, 1), (3, 2))}
    f = forecast_month(few, TODAY)
    assert f.line.slope == 0 and f.line.fit_days == 3  # under 2 weeks: no trend
    assert f.forecast_nanousd == 6 * USD + 13 * 2 * USD  # actual + 13 days at the mean $2
    only_today = forecast_month({TODAY: 4 * USD}, TODAY)
    assert only_today.line.fit_days == 0 and only_today.forecast_nanousd == 13 * 4 * USD


def test_zeros_before_the_first_spend_do_not_drag_the_line_down() -> None:
    series = {TODAY - timedelta(days=i): 7 * USD for i in range(1, 11)}  # 10 days old
    f = forecast_month(series, TODAY)
    assert f.line.fit_days == 10 and f.line.slope == 0
    assert f.forecast_nanousd == (10 + 13) * 7 * USD
    series = {TODAY - timedelta(days=i): 7 * USD for i in range(1, 18)}  # 17 days: 2 weeks
    f = forecast_month(series, TODAY)
    assert f.line.fit_days == 14 and f.line.slope == 0
    assert f.forecast_nanousd == (17 + 13) * 7 * USD


def test_a_falling_trend_stops_at_zero() -> None:
    today = date(2026, 11, 8)
    start = today - timedelta(days=28)
    series = linear(28 * USD, -USD, start, today)  # $28 falling to $1 yesterday
    f = forecast_month(series, today)
    assert f.line.slope == Fraction(-USD, 2)
    predicted = [v for d, v, _ in f.days if d >= today]
    assert predicted[-1] == 0 and predicted == sorted(predicted, reverse=True)
    assert f.forecast_nanousd == f.month_to_date_nanousd + sum(predicted)


def _noisy(seed: int, growth: Fraction, noise: int) -> dict[date, int]:
    """150 days from July: growth per day, weekends at a third, ±noise% uniform noise."""
    rnd = random.Random(seed)
    out = {}
    for i in range(150):
        d = date(2026, 7, 1) + timedelta(days=i)
        rhythm = Fraction(1, 3) if d.weekday() >= 5 else Fraction(1)
        out[d] = round(
            100 * USD * (1 + growth * i) * rhythm * (1 + Fraction(rnd.randint(-noise, noise), 100))
        )
    return out


def test_noisy_series_with_a_known_trend_land_close() -> None:
    """Weekend dips, ±20% daily noise, flat or growing 1.5%/week: MAPE after 14 days < 4%."""
    for growth in (Fraction(0), Fraction(15, 7000)):
        points = []
        for seed in range(20):
            points += backtest(_noisy(seed, growth, 20), [date(2026, 9, 1), date(2026, 10, 1)])
        summary = error_summary(points)
        assert summary[14]["points"] == 40
        assert summary[7]["mape_pct"] < 6, float(summary[7]["mape_pct"])
        assert summary[14]["mape_pct"] < 4, float(summary[14]["mape_pct"])
        assert summary[21]["mape_pct"] < 3, float(summary[21]["mape_pct"])


def test_a_steady_growth_is_forecast_better_than_with_no_trend() -> None:
    """Same noise, 1%/day growth: the damped trend beats a flat rate (the previous weeks' mean)."""
    ours = flat = Fraction(0)
    for seed in range(20):
        s = _noisy(seed, Fraction(1, 100), 20)
        for p in backtest(s, [date(2026, 9, 1), date(2026, 10, 1)], checkpoints=(14,)):
            ours += abs(p.forecast_nanousd - p.actual_nanousd)
            as_of = p.month + timedelta(days=14)
            rate = Fraction(sum(s[as_of - timedelta(days=i)] for i in range(1, 29)), 28)
            done = sum(s[p.month + timedelta(days=i)] for i in range(14))
            days = (next_month(p.month) - as_of).days
            flat += abs(done + rate * days - p.actual_nanousd)
    assert ours < flat * Fraction(3, 4), (float(ours), float(flat))


def test_backtest_of_a_steady_series_has_no_error() -> None:
    series = {date(2026, 7, 1) + timedelta(days=i): 3 * USD for i in range(150)}
    points = backtest(series, [date(2026, 9, 1), date(2026, 10, 1)])
    assert [(p.month.month, p.known_days) for p in points] == [
        (9, 7), (9, 14), (9, 21), (10, 7), (10, 14), (10, 21)
    ]  # fmt: skip
    assert all(p.forecast_nanousd == p.actual_nanousd for p in points)
    summary = error_summary(points)
    assert {k: (v["mape_pct"], v["wape_pct"]) for k, v in summary.items()} == {
        7: (0, 0),
        14: (0, 0),
        21: (0, 0),
    }


def test_backtest_errors_are_signed_and_summed_as_mape_and_wape() -> None:
    # Flat $10/day until Oct 15, then $20/day: the forecast after 14 days misses low.
    series = {date(2026, 9, 1) + timedelta(days=i): 10 * USD for i in range(44)}
    series.update({date(2026, 10, 15) + timedelta(days=i): 20 * USD for i in range(17)})
    (p,) = backtest(series, [date(2026, 10, 1)], checkpoints=(14,))
    assert p.actual_nanousd == 14 * 10 * USD + 17 * 20 * USD
    assert p.forecast_nanousd == 31 * 10 * USD
    assert p.error_pct == Fraction(310 - 480, 480) * 100
    s = error_summary([p])[14]
    assert s["mape_pct"] == s["wape_pct"] == Fraction(170, 480) * 100


def test_breach_day_is_the_first_day_the_cumulative_spend_reaches_the_cap() -> None:
    series = {TODAY - timedelta(days=i): 10 * USD for i in range(1, 40)}
    f = forecast_month(series, TODAY)  # $170 by Nov 17, then $10/day
    assert breach_day(f, 200 * USD) == date(2026, 11, 20)
    assert breach_day(f, 170 * USD) == date(2026, 11, 17)  # already reached
    assert breach_day(f, 300 * USD) == date(2026, 11, 30)
    assert breach_day(f, 300 * USD + 1) is None


@given(
    values=st.lists(st.integers(0, 50 * USD), min_size=0, max_size=80),
    today_spend=st.integers(0, 50 * USD),
    offset=st.integers(0, 60),
)
def test_forecast_is_never_below_what_was_spent(
    values: list[int], today_spend: int, offset: int
) -> None:
    today = date(2026, 10, 1) + timedelta(days=offset)
    series = {today - timedelta(days=i + 1): v for i, v in enumerate(values)}
    series[today] = today_spend
    f = forecast_month(series, today)
    assert f.forecast_nanousd >= f.month_to_date_nanousd >= today_spend
    assert f.end == next_month(today) and len(f.days) == (f.end - f.start).days
    line = fit_line(series, today)
    assert all(line.at(today + timedelta(days=i)) >= 0 for i in range(40))
