"""Exports never hand a spreadsheet a formula.

A gateway client chooses the model name it sends, and that name lands in
the ledger and in the CSV exports an admin opens in a spreadsheet. A text
cell starting with ``=``, ``+``, ``-``, ``@``, tab or CR is prefixed with
``'`` (OWASP's CSV-injection guard); numbers, negative ones included, stay
numbers. JSON Lines exports keep the value as it is (JSON is not evaluated).
"""

import csv
import io
import json
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import Engine

from metis.analytics.exports import csv_safe
from tests.conftest import Cli
from tests.plugins.servers import GatewayServer

HOSTILE = ['=HYPERLINK("http://evil.example","x")', "+1+cmd|' /C calc'!A0", "@SUM(A1)", "-2+3"]


@pytest.mark.parametrize("value", [*HOSTILE, "\tx", "\rx", "-", "=1"])
def test_formula_text_is_quoted(value: str) -> None:
    assert csv_safe(value) == "'" + value


@pytest.mark.parametrize(
    "value",
    ["gpt-4o", "-0.000123", "-5", "+1.5", "1e-9", "", "alice", Decimal("-0.5"), -3, None],
)
def test_numbers_and_plain_text_are_unchanged(value: object) -> None:
    assert csv_safe(value) == value


def test_hostile_model_names_from_gateway_clients_are_inert_in_csv(
    gateway: GatewayServer, cli: type[Cli], engine: Engine
) -> None:
    _, secret = gateway.issue_key("attacker", user="mallory")
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        for model in HOSTILE:
            r = http.post(
                "/v1/chat/completions",
                json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
                headers={"Authorization": f"Bearer {secret}"},
            )
            assert r.status_code < 500, r.text
    gateway.flush()
    out = cli.ok("export", "usage", "--format", "csv", "--from", "2020-01-01").stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    models = {row["model"] for row in rows}
    assert {"'" + m.lower() for m in HOSTILE} <= models, models  # names are normalized
    for row in rows:
        for cell in row.values():
            assert cell[:1] not in ("=", "+", "@") and not (
                cell.startswith("-") and not _is_number(cell)
            ), row
    grouped = cli.ok(
        "export", "usage", "--format", "csv", "--group-by", "model", "--from", "2020-01-01"
    ).stdout
    grouped_models = {row["model"] for row in csv.DictReader(io.StringIO(grouped))}
    assert {"'" + m.lower() for m in HOSTILE} <= grouped_models, grouped_models
    # JSON Lines keeps the exact value
    jl = cli.ok("export", "usage", "--format", "jsonl", "--from", "2020-01-01").stdout
    assert {json.loads(line)["model"] for line in jl.splitlines()} >= {m.lower() for m in HOSTILE}


def _is_number(s: str) -> bool:
    try:
        Decimal(s)
    except ArithmeticError:
        return False
    return True
