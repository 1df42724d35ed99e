import pytest

from metis.secrets.envelope import NONCE_BYTES, DecryptionError, Sealed, open_secret, seal
from metis.secrets.master_key import decode_key, generate_key_text


def _key():  # type: ignore[no-untyped-def]
    return decode_key(generate_key_text(), origin="test")


def test_roundtrip_and_fresh_nonce() -> None:
    k = _key()
    a = seal(k, "sk-admin-abcdef123456", credential_id="cred_1", workspace_id="ws_1")
    b = seal(k, "sk-admin-abcdef123456", credential_id="cred_1", workspace_id="ws_1")
    assert len(a.nonce) == NONCE_BYTES
    assert a.nonce != b.nonce and a.ciphertext != b.ciphertext
    assert a.key_id == k.key_id
    assert b"sk-admin" not in a.ciphertext
    assert open_secret(k, a, credential_id="cred_1", workspace_id="ws_1") == "sk-admin-abcdef123456"


@pytest.mark.parametrize("pos", [0, 5, -1])
def test_one_flipped_byte_fails_clearly(pos: int) -> None:
    k = _key()
    s = seal(k, "sk-secret-value-xyz", credential_id="cred_1", workspace_id="ws_1")
    ct = bytearray(s.ciphertext)
    ct[pos] ^= 0x01
    with pytest.raises(DecryptionError, match="tampered") as ei:
        open_secret(
            k, Sealed(bytes(ct), s.nonce, s.key_id), credential_id="cred_1", workspace_id="ws_1"
        )
    assert "sk-secret" not in str(ei.value)


def test_binding_to_credential_and_workspace() -> None:
    k = _key()
    s = seal(k, "sk-x-123456789", credential_id="cred_1", workspace_id="ws_1")
    for cid, ws in (("cred_2", "ws_1"), ("cred_1", "ws_2")):
        with pytest.raises(DecryptionError):
            open_secret(k, s, credential_id=cid, workspace_id=ws)


def test_wrong_key_names_key_ids() -> None:
    k1, k2 = _key(), _key()
    s = seal(k1, "sk-x-123456789", credential_id="c", workspace_id="w")
    with pytest.raises(DecryptionError, match=k1.key_id):
        open_secret(k2, s, credential_id="c", workspace_id="w")
    # a keyring holding the right key opens it
    assert open_secret([k2, k1], s, credential_id="c", workspace_id="w") == "sk-x-123456789"
