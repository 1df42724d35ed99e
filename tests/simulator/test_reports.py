"""Buckets and cursors (`metis.simulator.reports`)."""

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from metis.simulator import reports


@given(
    start=st.integers(0, 2_000_000_000),
    span=st.integers(1, 10 * 86400),
    width=st.sampled_from([60, 3600, 86400]),
    limit=st.integers(1, 50),
)
@example(start=0, span=600_001, width=60, limit=1)  # 10,001 pages: once outran the test's loop
def test_pages_cover_the_range_without_gaps(start: int, span: int, width: int, limit: int) -> None:
    end = start + span
    seen: list[int] = []
    page = None
    for _ in range(span // width + 3):  # every page holds a bucket: never more pages
        w = reports.window(start, end, end, width, limit, page)
        assert len(w.starts) <= limit
        seen += w.starts
        if not w.has_more:
            assert w.next_start is None
            break
        page = w.next_start
    else:
        pytest.fail("pagination did not end")
    assert seen[0] == start - start % width and seen[0] <= start
    assert seen == list(range(seen[0], end, width))
    assert seen[-1] < end <= seen[-1] + width


def test_cursors_round_trip_and_reject_garbage() -> None:
    assert reports.parse_openai_cursor(reports.openai_cursor(1_730_419_200)) == 1_730_419_200
    c = reports.anthropic_cursor(1_747_180_800)
    assert c == "page_MjAyNS0wNS0xNFQwMDowMDowMFo="  # the docs' example cursor
    assert reports.parse_anthropic_cursor(c) == 1_747_180_800
    for bad in ("page_!!", "page_AAAA", "nope"):
        with pytest.raises(reports.ParamError):
            reports.parse_openai_cursor(bad)
    with pytest.raises(reports.ParamError):
        reports.window(0, 1000, 1000, 60, 5, 30)  # not on a bucket boundary
