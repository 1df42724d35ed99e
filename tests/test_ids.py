"""Ids: prefixed ULIDs; the hot-path generator yields valid, time-ordered, distinct ULIDs."""

import time

from ulid import ULID

from metis.gateway.app import request_id
from metis.ids import fast_ulid, new_id


def test_fast_ulid_is_a_ulid_of_now() -> None:
    before = time.time()
    u = fast_ulid()
    after = time.time()
    assert len(u) == 26
    parsed = ULID.from_str(u)
    assert str(parsed) == u
    assert before - 0.002 <= parsed.timestamp <= after + 0.002


def test_fast_ulids_are_distinct_and_sort_by_time() -> None:
    ids = [fast_ulid() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    first = fast_ulid()
    time.sleep(0.003)
    later = fast_ulid()
    assert first < later


def test_prefixed_ids() -> None:
    assert request_id().startswith("req_") and len(request_id()) == 30
    assert new_id("evt").startswith("evt_") and len(new_id("evt")) == 30
