import base64
import stat
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from metis.db.engine import make_engine
from metis.db.tables import provider_credentials
from tests.conftest import Cli

SECRET = "sk-admin-Q9x7TESTplaintext4242"


def _cred_id(out: str) -> str:
    return next(w for w in out.split() if w.startswith("cred_")).rstrip(":")


def test_add_list_remove(cli: type[Cli]) -> None:
    cli.ok("workspace", "add", "acme")
    r = cli.ok(
        "provider-key",
        "add",
        "--workspace",
        "acme",
        "--provider",
        "openai",
        "--purpose",
        "usage_admin",
        "--purpose",
        "inference",
        "--org-id",
        "org_1",
        "--base-url",
        "http://127.0.0.1:1/v1",
        input=SECRET + "\n",
    )
    cid = _cred_id(r.stdout)
    assert SECRET not in r.output and "…4242" in r.stdout
    lst = cli.ok("provider-key", "list")
    assert "…4242" in lst.stdout and SECRET not in lst.output
    js = cli.ok("provider-key", "list", "--json", "--workspace", "acme")
    assert cid in js.stdout and '"last4":"4242"' in js.stdout and SECRET[:-4] not in js.stdout
    cli.ok("provider-key", "remove", cid)
    assert cid not in cli.ok("provider-key", "list", "--json").stdout
    bad = cli.run("provider-key", "remove", cid)
    assert bad.exit_code == 1 and "unknown credential" in bad.stderr


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_standard_usage_admin_refused(cli: type[Cli], provider: str) -> None:
    cli.ok("workspace", "add", "acme")
    r = cli.run(
        "provider-key",
        "add",
        "--workspace",
        "acme",
        "--provider",
        provider,
        "--mode",
        "standard",
        "--purpose",
        "usage_admin",
        input=SECRET,
    )
    assert r.exit_code == 1
    assert "no per-key usage endpoint" in r.stderr and "--mode admin" in r.stderr


def test_empty_stdin_and_bad_ref(cli: type[Cli]) -> None:
    cli.ok("workspace", "add", "acme")
    r = cli.run(
        "provider-key",
        "add",
        "-w",
        "acme",
        "--provider",
        "openai",
        "--purpose",
        "inference",
        input="",
    )
    assert r.exit_code == 1 and "no secret given" in r.stderr
    r = cli.run(
        "provider-key",
        "add",
        "-w",
        "acme",
        "--provider",
        "openai",
        "--purpose",
        "inference",
        "--secret-ref",
        "file:key.txt",
    )
    assert r.exit_code == 1 and "absolute path" in r.stderr


def test_secret_is_not_an_option(cli: type[Cli]) -> None:
    cli.ok("workspace", "add", "acme")
    r = cli.run(
        "provider-key",
        "add",
        "-w",
        "acme",
        "--provider",
        "openai",
        "--purpose",
        "inference",
        "--secret",
        SECRET,
    )
    assert r.exit_code != 0 and "No such option" in r.output


def test_rotate_master_key_file_mode(
    cli: type[Cli], metis_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    home = Path(metis_env["METIS_HOME"])
    (home / "master.key").write_text(metis_env["METIS_MASTER_KEY"] + "\n")
    (home / "master.key").chmod(0o600)
    monkeypatch.delenv("METIS_MASTER_KEY")
    cli.ok("workspace", "add", "acme")
    ids = [
        _cred_id(
            cli.ok(
                "provider-key",
                "add",
                "-w",
                "acme",
                "--provider",
                p,
                "--purpose",
                "inference",
                input=f"{SECRET}-{p}",
            ).stdout
        )
        for p in ("openai", "anthropic")
    ]
    old = (home / "master.key").read_text()
    r = cli.ok("secrets", "rotate-master-key")
    assert "re-encrypted 2 credential(s)" in r.stdout
    new = (home / "master.key").read_text()
    assert new != old and len(base64.b64decode(new.strip())) == 32
    assert stat.S_IMODE((home / "master.key").stat().st_mode) == 0o600
    assert not (home / "master.key.next").exists()
    from metis.config import get_settings
    from metis.credentials import reveal_secret

    eng = make_engine(metis_env["METIS_DATABASE_URL"])
    with eng.connect() as conn:
        kids = set(conn.execute(select(provider_credentials.c.master_key_id)).scalars())
        assert len(kids) == 1
        assert reveal_secret(conn, get_settings(), ids[0]) == f"{SECRET}-openai"
        assert reveal_secret(conn, get_settings(), ids[1]) == f"{SECRET}-anthropic"
    eng.dispose()


def test_rotate_master_key_env_mode(
    cli: type[Cli], metis_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    home = Path(metis_env["METIS_HOME"])
    cli.ok("workspace", "add", "acme")
    cid = _cred_id(
        cli.ok(
            "provider-key",
            "add",
            "-w",
            "acme",
            "--provider",
            "openai",
            "--purpose",
            "inference",
            input=SECRET,
        ).stdout
    )
    r = cli.ok("secrets", "rotate-master-key")
    assert "Set METIS_MASTER_KEY" in r.stdout
    nxt = home / "master.key.next"
    assert stat.S_IMODE(nxt.stat().st_mode) == 0o600
    from metis.config import get_settings
    from metis.credentials import reveal_secret

    eng = make_engine(metis_env["METIS_DATABASE_URL"])
    with eng.connect() as conn:  # still decrypts through master.key.next
        assert reveal_secret(conn, get_settings(), cid) == SECRET
    monkeypatch.setenv("METIS_MASTER_KEY", nxt.read_text().strip())
    nxt.unlink()
    with eng.connect() as conn:  # and with the new env key alone
        assert reveal_secret(conn, get_settings(), cid) == SECRET
    eng.dispose()


def test_provider_key_test_reports_ok_or_provider_error(cli: type[Cli], provisioned: "Any") -> None:
    ok = cli.ok("provider-key", "test", provisioned.credential_id)
    assert ok.stdout.startswith("ok:")
    assert len(provisioned.fake.requests) == 1  # one cheap call
    provisioned.fake.admin_key = "sk-admin-other"
    bad = cli.run("provider-key", "test", provisioned.credential_id)
    assert bad.exit_code == 1
    assert "HTTP 401" in bad.stderr and "authentication_error" in bad.stderr
