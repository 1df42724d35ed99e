from pathlib import Path

import pytest
from sqlalchemy import Engine, select, update

from metis.config import get_settings
from metis.credentials import (
    add_credential,
    find_credential,
    list_credentials,
    remove_credential,
    reveal_secret,
)
from metis.db.tables import provider_credentials
from metis.errors import NotFoundError, ValidationError
from metis.secrets.envelope import DecryptionError
from metis.workspaces import add_workspace


@pytest.fixture
def ws(engine: Engine, metis_env: dict[str, str]) -> str:
    with engine.begin() as conn:
        return add_workspace(conn, "acme").id


def test_add_find_reveal_remove(engine: Engine, ws: str) -> None:
    s = get_settings()
    with engine.begin() as conn:
        c1 = add_credential(
            conn,
            s,
            workspace_id=ws,
            provider="openai",
            purposes=["inference"],
            secret="sk-test-aaaa1111",
            base_url="http://127.0.0.1:9/v1/",
        )
        c2 = add_credential(
            conn,
            s,
            workspace_id=ws,
            provider="openai",
            purposes=["usage_admin", "inference"],
            secret="sk-admin-bbbb2222",
            org_id="org_1",
        )
    assert c1.mode == "standard" and c2.mode == "admin"
    assert c1.base_url == "http://127.0.0.1:9" and c1.api_root == "http://127.0.0.1:9"
    assert c2.api_root == "https://api.openai.com"
    assert c2.purposes == ("inference", "usage_admin") and c2.last4 == "2222"
    with engine.begin() as conn:
        assert find_credential(conn, ws, "openai", "usage_admin") == c2
        assert find_credential(conn, ws, "openai", "inference") == c2  # newest wins
        assert find_credential(conn, ws, "anthropic", "inference") is None
        assert reveal_secret(conn, s, c1.id) == "sk-test-aaaa1111"
        row = (
            conn.execute(select(provider_credentials).where(provider_credentials.c.id == c1.id))
            .mappings()
            .one()
        )
        assert b"sk-test" not in bytes(row["ciphertext"]) and len(row["nonce"]) == 12
        remove_credential(conn, c2.id)
        assert find_credential(conn, ws, "openai", "inference") == c1
        with pytest.raises(NotFoundError):
            reveal_secret(conn, s, c2.id)
        gone = conn.execute(
            select(provider_credentials.c.ciphertext).where(provider_credentials.c.id == c2.id)
        ).scalar_one()
        assert gone is None
        assert [c.id for c in list_credentials(conn, workspace_id=ws)] == [c1.id]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_standard_usage_admin_refused(engine: Engine, ws: str, provider: str) -> None:
    with engine.begin() as conn, pytest.raises(ValidationError, match="per-key usage"):
        add_credential(
            conn,
            get_settings(),
            workspace_id=ws,
            provider=provider,
            purposes=["usage_admin"],
            mode="standard",
            secret="sk-x-12345678",
        )


def test_tampered_ciphertext_is_a_clear_error(engine: Engine, ws: str) -> None:
    s = get_settings()
    with engine.begin() as conn:
        c = add_credential(
            conn,
            s,
            workspace_id=ws,
            provider="anthropic",
            purposes=["usage_admin"],
            secret="sk-ant-admin01-zzzz9999",
        )
        ct = bytearray(
            conn.execute(
                select(provider_credentials.c.ciphertext).where(provider_credentials.c.id == c.id)
            ).scalar_one()
        )
        ct[3] ^= 0x80
        conn.execute(
            update(provider_credentials)
            .where(provider_credentials.c.id == c.id)
            .values(ciphertext=bytes(ct))
        )
    with engine.connect() as conn, pytest.raises(DecryptionError, match="tampered") as ei:
        reveal_secret(conn, s, c.id)
    assert "zzzz" not in str(ei.value)


def test_secret_ref(
    engine: Engine, ws: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = get_settings()
    f = tmp_path / "k"
    f.write_text("sk-file-1234abcd\n")
    monkeypatch.setenv("OPENAI_ADMIN_KEY_T", "sk-env-5678efgh")
    with engine.begin() as conn:
        a = add_credential(
            conn,
            s,
            workspace_id=ws,
            provider="openai",
            purposes=["inference"],
            secret_ref=f"file:{f}",
        )
        b = add_credential(
            conn,
            s,
            workspace_id=ws,
            provider="openai",
            purposes=["inference"],
            secret_ref="env:OPENAI_ADMIN_KEY_T",
        )
        assert a.last4 == "abcd" and b.last4 == "efgh"
        assert reveal_secret(conn, s, a.id) == "sk-file-1234abcd"
        assert reveal_secret(conn, s, b.id) == "sk-env-5678efgh"
        row = (
            conn.execute(select(provider_credentials).where(provider_credentials.c.id == a.id))
            .mappings()
            .one()
        )
        assert row["ciphertext"] is None and row["secret_ref"] == f"file:{f}"
