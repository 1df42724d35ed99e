"""Forecast backtest: the month-end forecast's error on past months, against two baselines.

Replays `metis.analytics.forecast` (the damped weekly trend the API, CLI,
dashboard and ``forecast_breach`` alert use) on daily spend series whose
truth is known, making the forecast after 7, 14 and 21 days of each month and
comparing it with what the month cost, and does the same for two simpler
methods a FinOps sheet would use:

- ``mean28``: the mean of the last 28 complete days, flat to the month's end;
- ``runrate``: the month-to-date average, flat to the month's end.

Series:

- synthetic families (150 days, 40 seeds each): weekdays at full rate and
  weekends at a third, uniform daily noise of ±20% or ±50%, and a trend of 0,
  +1.5%/week, +1%/day or -0.3%/day of the starting level;
- the provider simulator's deterministic history (`metis.simulator.history`,
  the data behind ``metis demo``), per provider, 150 days.

Mean absolute percentage error (MAPE) per checkpoint; the months replayed
are the complete ones with data from their first day (three per series).

    .venv/bin/python bench/forecast_backtest.py

Prints Markdown tables; results are recorded in docs/analytics.md ("Forecasts").
"""

import random
import statistics
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction

from metis.analytics.forecast import CHECKPOINTS, forecast_month, next_month
from metis.simulator.history import generate

Series = dict[date, int]
USD = 1_000_000_000
START = date(2026, 5, 1)
DAYS = 150
MONTHS = [date(2026, 6, 1), date(2026, 7, 1), date(2026, 8, 1)]


def synthetic(seed: int, growth: Fraction, noise: int) -> Series:
    rnd = random.Random(seed)
    out: Series = {}
    for i in range(DAYS):
        d = START + timedelta(days=i)
        rhythm = Fraction(1, 3) if d.weekday() >= 5 else Fraction(1)
        level = max(Fraction(0), 1 + growth * i)
        wobble = 1 + Fraction(rnd.randint(-noise, noise), 100)
        out[d] = round(100 * USD * level * rhythm * wobble)
    return out


def simulator(provider: str, seed: int = 7) -> Series:
    now = datetime(2026, 9, 28, tzinfo=UTC).timestamp()  # 150 days of history before it
    out: Series = defaultdict(int)
    for c in generate(seed, DAYS, now):
        if c.provider == provider:
            out[datetime.fromtimestamp(c.ts, UTC).date()] += c.cost_nanousd
    return dict(out)


def ours(s: Series, as_of: date) -> int:
    known = {d: v for d, v in s.items() if d < as_of}
    return forecast_month(known, as_of).forecast_nanousd


def _flat(s: Series, as_of: date, rate: Fraction) -> int:
    start = as_of.replace(day=1)
    done = sum(s.get(start + timedelta(days=i), 0) for i in range((as_of - start).days))
    return round(done + rate * (next_month(as_of) - as_of).days)


def mean28(s: Series, as_of: date) -> int:
    return _flat(s, as_of, Fraction(sum(s[as_of - timedelta(days=i)] for i in range(1, 29)), 28))


def runrate(s: Series, as_of: date) -> int:
    start = as_of.replace(day=1)
    k = (as_of - start).days
    return _flat(s, as_of, Fraction(sum(s[start + timedelta(days=i)] for i in range(k)), k))


METHODS: dict[str, Callable[[Series, date], int]] = {
    "damped weekly trend (Metis)": ours,
    "mean of the last 28 days": mean28,
    "month-to-date run rate": runrate,
}


def errors(series: list[Series], method: Callable[[Series, date], int]) -> dict[int, float]:
    out: dict[int, list[float]] = defaultdict(list)
    for s in series:
        for m in MONTHS:
            actual = sum(s[m + timedelta(days=i)] for i in range((next_month(m) - m).days))
            for k in CHECKPOINTS:
                f = method(s, m + timedelta(days=k))
                out[k].append(abs(f - actual) / actual * 100)
    return {k: statistics.fmean(v) for k, v in out.items()}


def main() -> None:
    families = {
        "flat": Fraction(0),
        "+1.5%/week": Fraction(15, 7000),
        "+1%/day": Fraction(1, 100),
        "-0.3%/day": Fraction(-3, 1000),
    }
    print("| series | noise | method | after 7 days | after 14 days | after 21 days |")
    print("|---|---|---|---|---|---|")
    overall: dict[str, list[dict[int, float]]] = defaultdict(list)
    for name, growth in families.items():
        for noise in (20, 50):
            series = [synthetic(seed, growth, noise) for seed in range(40)]
            for label, method in METHODS.items():
                e = errors(series, method)
                overall[label].append(e)
                print(
                    f"| {name} | ±{noise}% | {label} | "
                    + " | ".join(f"{e[k]:.1f}%" for k in CHECKPOINTS)
                    + " |"
                )
    print()
    print("| method | mean over the 8 synthetic families: 7 days | 14 days | 21 days |")
    print("|---|---|---|---|")
    for label, es in overall.items():
        print(
            f"| {label} | "
            + " | ".join(f"{statistics.fmean(e[k] for e in es):.1f}%" for k in CHECKPOINTS)
            + " |"
        )
    print()
    print("| simulator history (seed 7) | method | after 7 days | after 14 days | after 21 days |")
    print("|---|---|---|---|---|")
    for provider in ("openai", "anthropic"):
        s = simulator(provider)
        for d in (START + timedelta(days=i) for i in range(DAYS)):
            s.setdefault(d, 0)
        for label, method in METHODS.items():
            e = errors([s], method)
            print(
                f"| {provider} | {label} | "
                + " | ".join(f"{e[k]:.1f}%" for k in CHECKPOINTS)
                + " |"
            )


if __name__ == "__main__":
    main()
