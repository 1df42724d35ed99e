"""schemathesis against ``/openapi.json``: the admin and ingest API on a real server.

Every operation of the OpenAPI document is called with generated valid
(positive) and invalid (negative) input, authenticated with the credential
it needs (admin token, ingest token, cron secret) over seeded data. Every
built-in check runs: no 5xx, status codes and content types the document
declares, bodies that match the declared response schemas, invalid input
rejected. Examples per operation are fixed and derandomized (reproducible,
bounded CI time). The operations run inside one test (one server) and every
failing operation is reported, not just the first.

Extreme dates and sizes (issue 19): generated ``date-time`` values span the
whole of years 1-9999 with any offset and include the red-team's
``0001-01-01`` and ``9999-12-31T23:59:59Z`` (`EXTREME_TIMES`), and
`test_extreme_values_get_no_5xx` sends every operation each parameter at
its extremes (those dates, huge and negative numbers, long text) and the
push and cron bodies at theirs (the issue's ten USD 1e9 items, counts past
64 bits, 5 MB fields, a full batch at the per-item bounds).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import schemathesis
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.fuzz.conftest import SeededServer
from tests.fuzz.settings import fuzz_settings

EXAMPLES = 20
EXTREME_DATES = (
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "1999-12-31T23:59:59Z",
    "2200-01-01T00:00:01Z",
)
EXTREME_TIMES = st.sampled_from(EXTREME_DATES) | st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)
).flatmap(
    lambda d: st.sampled_from(["Z", "+00:00", "+14:00", "-12:00", ""]).map(
        lambda o: d.isoformat() + o
    )
)
# Generated date-time values (query windows, push item times) span all of years 1-9999.
schemathesis.openapi.format("date-time", EXTREME_TIMES)


def auth_for(path: str, srv: SeededServer) -> dict[str, str]:
    """The credential the operation is meant for."""
    if path == "/v1/ingest/usage":
        token = srv.ingest_token
    elif path == "/cron/usage":
        token = srv.cron_secret
    else:
        token = srv.admin_token
    return {"Authorization": f"Bearer {token}"}


def fuzz(
    op: APIOperation, mode: GenerationMode, headers: dict[str, str], excluded: list[Any]
) -> None:
    """``EXAMPLES`` generated calls of one operation, every built-in check on each."""

    @given(case=op.as_strategy(generation_mode=mode))
    @fuzz_settings(EXAMPLES, deadline_ms=None)
    def run(case: Case) -> None:
        case.call_and_validate(headers=headers, timeout=30, excluded_checks=excluded)

    run()


# Schema-valid input may still name things that do not exist (an unknown user, a
# window with from after to): the API answers those with its documented 400.
# Anything else for valid input (a 422, a 5xx, an undeclared status) still fails.
CONFIG = {
    "checks": {
        "positive_data_acceptance": {"expected-statuses": ["2XX", 400, 401]},
    },
}


def test_api_conforms_to_its_openapi_document(seeded_server: SeededServer) -> None:
    schema = schemathesis.openapi.from_url(
        f"{seeded_server.url}/openapi.json", config=schemathesis.Config.from_dict(CONFIG)
    )
    failures: list[str] = []
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 15  # the admin, analytics, export, ingest and cron routes
    for op in operations:
        headers = auth_for(op.path, seeded_server)
        # A push batch of schema-valid items may still be rejected per item (time vs
        # window, cached > input, a time in the future): that is its documented 422,
        # whose body (PushResult) is still checked against the schema.
        excluded = [positive_data_acceptance] if op.path == "/v1/ingest/usage" else []
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                fuzz(op, mode, headers, excluded)
            except Unsatisfiable:
                # No input to make invalid (an operation without parameters or body).
                assert mode == GenerationMode.NEGATIVE, op.label
            except (AssertionError, BaseExceptionGroup) as exc:  # schemathesis check failures
                failures.append(f"{op.label} [{mode.value}]: {exc}")
    assert not failures, "\n\n".join(failures)


def test_cron_with_an_unknown_workspace_is_a_400(seeded_server: SeededServer) -> None:
    """Found by the fuzzer: an unknown workspace used to answer 200 with no runs."""
    r = httpx.post(
        f"{seeded_server.url}/cron/usage",
        headers=auth_for("/cron/usage", seeded_server),
        json={"workspace": "no-such-workspace"},
        timeout=30,
    )
    assert r.status_code == 400, r.text
    assert "unknown workspace 'no-such-workspace'" in r.json()["detail"]["message"]


EXTREME_SCALARS: tuple[Any, ...] = (
    *EXTREME_DATES,
    "0001-01-01",
    "9999-12-31",
    "-1",
    "0",
    "99999999999999999999999999999",
    "1e400",
    "NaN",
    "x" * 8000,
    "\u0000",
    "../../etc/passwd",
    "model,day,user,team,source,provider,workspace,gateway_key," * 50,
)


def _push_bodies() -> list[dict[str, Any]]:
    base = {"idempotency_key": "k", "time": "2026-11-01T10:00:00Z", "provider": "openai",
            "model": "gpt-4o-mini"}  # fmt: skip
    items: list[Any] = [
        [{**base, "idempotency_key": f"big-{i}", "cost_usd": "1000000000"} for i in range(10)],
        [
            {**base, "idempotency_key": f"max-{i}", "cost_usd": "100000000", "input_tokens": 10**15}
            for i in range(1000)
        ],
        [{**base, "input_tokens": 10**30}],
        [{**base, "input_tokens": -(2**63)}],
        [{**base, "cost_usd": 1e300}],
        [{**base, "time": d} for d in EXTREME_DATES],
        [{**base, "model": "m" * 200_000}],
        [{**base, "metadata": {f"k{i}": "v" * 500 for i in range(20)}}],
        [
            {
                **base,
                "window_start": "0001-01-01T00:00:00Z",
                "time": None,
                "window_end": "9999-12-31T23:59:59Z",
            }
        ],
    ]
    return [{"items": i} for i in items]


CRON_BODIES: list[Any] = [
    {"days": 10**30},
    {"days": -(2**63)},
    {"days": 31, "workspace": "w" * 8000},
    {"credential": "\u0000" * 100},
]


def test_extreme_values_get_no_5xx(seeded_server: SeededServer) -> None:
    """Each operation with each parameter (and body) at its extremes: never a 5xx."""
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import status_code_conformance

    schema = schemathesis.openapi.from_url(
        f"{seeded_server.url}/openapi.json", config=schemathesis.Config.from_dict(CONFIG)
    )
    failures: list[str] = []
    calls = 0
    for result in schema.get_all_operations():
        op = result.ok()
        headers = auth_for(op.path, seeded_server)
        cases = []
        for param in op.query:
            for value in EXTREME_SCALARS:
                cases.append(op.Case(query={param.name: value}))
        for param in op.path_parameters:
            for value in EXTREME_SCALARS:
                if "/" not in value:  # a client resolves ../ itself: another route, not this one
                    cases.append(op.Case(path_parameters={param.name: value}))
        if op.path == "/v1/ingest/usage":
            cases += [op.Case(body=b, media_type="application/json") for b in _push_bodies()]
        if op.path == "/cron/usage":
            cases += [op.Case(body=b, media_type="application/json") for b in CRON_BODIES]
        for case in cases:
            calls += 1
            try:
                response = case.call(headers=headers, timeout=60)
                case.validate_response(
                    response, checks=[not_a_server_error, status_code_conformance]
                )
                assert response.status_code < 500, response.text[:300]
            except (AssertionError, BaseExceptionGroup) as exc:
                failures.append(f"{op.label} {case.query or case.path_parameters}: {exc}")
    assert calls > 500
    assert not failures, "\n\n".join(failures[:20])
