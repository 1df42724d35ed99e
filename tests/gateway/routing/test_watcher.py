"""Hot reload of the rules file; a malformed edit keeps the last good rules."""

import logging
import os
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from metis.gateway.routing import RulesWatcher

GOOD = "schema_version: 1\nrules:\n  - {name: a, use: 'anthropic:claude-haiku-4-5'}\n"
GOOD2 = (
    "schema_version: 1\nrules:\n  - {name: b, use: 'openai:gpt-4o-mini'}\n"
    "  - {name: c, use: 'openai:gpt-4o'}\n"
)
BAD = "schema_version: 1\nrules:\n  - {name: bad, use: 'Azure/EU:x'}\n"


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def write(path: Path, text: str) -> None:
    path.write_text(text)
    st = path.stat()
    # make the change visible even on coarse-mtime file systems
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def metric(name: str) -> float:
    value = REGISTRY.get_sample_value(name)
    return 0.0 if value is None else value


def test_loads_at_start_and_reloads_after_the_interval(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    write(path, GOOD)
    clock = Clock()
    w = RulesWatcher(path, clock=clock)
    assert [r.name for r in w.current().rules] == ["a"]
    write(path, GOOD2)
    clock.t += 0.5
    assert [r.name for r in w.current().rules] == ["a"]  # not polled yet
    clock.t += 0.6
    assert [r.name for r in w.current().rules] == ["b", "c"]
    assert metric("metis_routing_rules") == 2
    assert metric("metis_routing_config_ok") == 1


def test_malformed_edit_keeps_last_good_rules_and_reports(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "routing.yaml"
    write(path, GOOD)
    clock = Clock()
    w = RulesWatcher(path, clock=clock)
    errors_before = metric("metis_routing_config_errors_total")
    write(path, BAD)
    clock.t += 2
    with caplog.at_level(logging.ERROR, logger="metis.gateway.routing"):
        rules = w.current()
    assert [r.name for r in rules.rules] == ["a"]
    assert w.last_error is not None
    assert "rules[0] \"bad\".use: invalid provider 'Azure/EU'" in w.last_error
    assert any("keeping the last good rules" in r.getMessage() for r in caplog.records)
    assert metric("metis_routing_config_ok") == 0
    assert metric("metis_routing_config_errors_total") == errors_before + 1
    # the same bad file is not re-reported every second
    clock.t += 2
    w.current()
    assert metric("metis_routing_config_errors_total") == errors_before + 1
    # fixing it takes effect and clears the error
    write(path, GOOD2)
    clock.t += 2
    assert [r.name for r in w.current().rules] == ["b", "c"]
    assert w.last_error is None
    assert metric("metis_routing_config_ok") == 1


def test_malformed_at_start_means_no_rules(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    write(path, "schema_version: [")
    w = RulesWatcher(path, clock=Clock())
    assert w.current().rules == ()
    assert w.last_error is not None and "invalid YAML" in w.last_error


def test_missing_then_created_then_deleted(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    clock = Clock()
    w = RulesWatcher(path, clock=clock)
    assert w.current().rules == () and w.last_error is None
    write(path, GOOD)
    clock.t += 1
    assert [r.name for r in w.current().rules] == ["a"]
    path.unlink()
    clock.t += 1
    assert w.current().rules == ()


def test_poll_uses_the_real_clock(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    write(path, GOOD)
    w = RulesWatcher(path, interval=0.0)
    write(path, GOOD2)
    assert [r.name for r in w.current().rules] == ["b", "c"]


def test_unreadable_path_is_reported_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "routing.yaml"
    path.mkdir()  # a directory where the file should be
    clock = Clock()
    with caplog.at_level(logging.ERROR, logger="metis.gateway.routing"):
        w = RulesWatcher(path, clock=clock)
        for _ in range(3):
            clock.t += 1
            assert w.current().rules == ()
    assert w.last_error is not None and "cannot read" in w.last_error
    assert len([r for r in caplog.records if "rejected" in r.getMessage()]) == 1
