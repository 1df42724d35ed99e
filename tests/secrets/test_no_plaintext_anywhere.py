"""The plaintext provider key appears in no log, event, CLI output, or database value.

Focused on provider pull sync and its failure paths (retries, a provider that
echoes the key back); tests/security/test_secrets_canary.py does the same for
every secret kind across every command and route.
"""

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine, LargeBinary, select

from metis.db.tables import provider_credentials
from tests.conftest import BACKEND, Cli, CliResult
from tests.ingest.fake_admin import Fault
from tests.ingest.pull_fixtures import ADMIN_KEYS, Provisioned
from tests.security.canary import all_values


def test_plaintext_key_is_nowhere(
    cli: type[Cli],
    provisioned: Provisioned,
    engine: Engine,
    metis_env: dict[str, str],
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("METIS_LOG_LEVEL", "DEBUG")  # every log line is checked
    secret = ADMIN_KEYS[provisioned.provider]
    outputs: list[CliResult] = []
    outputs.append(cli.ok("ingest", "sync", "--days", "2"))
    outputs.append(cli.ok("provider-key", "list"))
    outputs.append(cli.ok("provider-key", "list", "--json"))
    outputs.append(cli.ok("ingest", "status", "--json"))
    outputs.append(cli.ok("provider-key", "test", provisioned.credential_id))
    # failure paths: retries, then a provider that echoes the presented key back
    provisioned.fake.faults.append(Fault("429", times=1))
    outputs.append(cli.ok("ingest", "sync", "--days", "1"))
    provisioned.fake.admin_key = "sk-rotated-elsewhere-0000"
    bad = cli.run("ingest", "sync", "--days", "1")
    assert bad.exit_code == 1 and "[redacted]" in bad.stderr
    outputs.append(bad)
    t = cli.run("provider-key", "test", provisioned.credential_id)
    assert t.exit_code == 1 and "HTTP 401" in t.stderr
    outputs.append(t)
    captured = capfd.readouterr()
    for text in [o.stdout + o.stderr for o in outputs] + [captured.out, captured.err]:
        assert secret not in text
        assert secret[4:-4] not in text
    # structured logs were written (and are JSON lines)
    logs = [ln for o in outputs for ln in o.stderr.splitlines() if ln.startswith("{")]
    assert any(json.loads(ln)["event"] == "ingest.run_completed" for ln in logs)
    # every database value, events and runs included
    found = []
    for table, col, v in all_values(engine):
        if isinstance(v, bytes | bytearray | memoryview):
            raw = bytes(v)
            assert secret.encode() not in raw, (table, col)
            continue
        text = json.dumps(v, default=str)
        if secret in text or secret[4:-4] in text:
            found.append((table, col))
    assert found == []
    # the only place derived from it is the ciphertext row (and its last four characters)
    with engine.connect() as conn:
        ct = conn.execute(select(provider_credentials.c.ciphertext)).scalar_one()
    assert ct and secret.encode() not in bytes(ct)
    # and on SQLite, the raw database file (with its WAL) holds no plaintext either
    if BACKEND == "sqlite":
        home = Path(metis_env["METIS_HOME"])
        for f in home.iterdir():
            if f.is_file():
                assert secret.encode() not in f.read_bytes(), f.name
    assert isinstance(provider_credentials.c.ciphertext.type, LargeBinary)
