"""Exact integer sums: `wide_sum` and `rows_with_exact_sums` past 64 bits, on both backends."""

from typing import Any

from sqlalchemy import Engine, event, literal, select, union_all

from metis.db.sums import SumFn, rows_with_exact_sums, wide_sum

BIG = 2**62


def _values(*vals: int) -> Any:
    return union_all(*(select(literal(v).label("x"), literal(i % 2).label("g"))
                       for i, v in enumerate(vals))).subquery()  # fmt: skip


def test_sums_past_64_bits_are_exact_and_small_ones_take_one_query(engine: Engine) -> None:
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    def build(rows: Any) -> Any:
        def q(sum_fn: SumFn) -> Any:
            return select(rows.c.g, sum_fn(rows.c.x)).group_by(rows.c.g).order_by(rows.c.g)

        return q

    event.listen(engine, "before_cursor_execute", count)
    try:
        with engine.connect() as c:
            big = _values(BIG, BIG, BIG, BIG, 5)  # group 0: 2**63 + 5, group 1: 2**63
            got = [tuple(r) for r in rows_with_exact_sums(c, build(big))]
            assert got == [(0, 2 * BIG + 5), (1, 2 * BIG)]
            assert got == [tuple(r) for r in c.execute(build(big)(wide_sum)).all()]
            assert all(type(r[1]) is int for r in got)
            n = len(statements)
            small = _values(1, 2, 3)
            assert [tuple(r) for r in rows_with_exact_sums(c, build(small))] == [(0, 4), (1, 2)]
            assert len(statements) == n + 1  # no fallback when the sums fit
    finally:
        event.remove(engine, "before_cursor_execute", count)
