"""The canary scanner finds whole and partial secrets, and lets by-design fragments pass.

The secrets canary is only as good as its search: this pins what counts as
a leak (a run of `window` characters of the random part) and what does not
(the last four of a provider key, the ``gw_`` + 7 display prefix).
"""

from metis.identity.keys import DISPLAY_PREFIX_LEN, new_secret
from metis.simulator.keys import new_openai_key
from tests.security.canary import Scanner


def test_whole_and_partial_secrets_are_found() -> None:
    sc = Scanner()
    gw = sc.add("gateway key", new_secret())
    sk = sc.add("provider key", new_openai_key(), 7)
    mid = len(sk) // 2
    for text in (
        f"token={gw}",
        f"prefix {gw[3:15]} suffix",  # 12 random characters, no prefix
        f"masked sk-...{sk[mid : mid + 7]}...",
        f"err: {sk}",
    ):
        before = len(sc.hits)
        sc.text("probe", text)
        assert len(sc.hits) == before + 1, text


def test_display_forms_are_not_leaks() -> None:
    sc = Scanner()
    gw = sc.add("gateway key", new_secret())
    sk = sc.add("provider key", new_openai_key(), 7)
    sc.text("list-keys", f"key_01J… {gw[:DISPLAY_PREFIX_LEN]} active")
    sc.text("provider-key list", f"cred_01J… openai …{sk[-4:]}")
    sc.text("allowed", f"issued: {gw}", allow=("gateway key",))
    assert sc.hits == []


def test_a_stored_prefix_next_to_a_coincidental_character_is_not_a_leak() -> None:
    """SQLite stores display_prefix right before the key's name; a name that
    happens to start with the secret's next character once failed CI."""
    sc = Scanner()
    gw = sc.add("gateway key", new_secret())
    shown = gw[:DISPLAY_PREFIX_LEN]
    sc.blob("metis.db", f"{'a' * 64}{shown}{gw[DISPLAY_PREFIX_LEN]}efs-key".encode())
    assert sc.hits == []


def test_binary_columns_are_searched() -> None:
    sc = Scanner()
    gw = sc.add("gateway key", new_secret())
    sc.blob("blob", b"\x00\xff" + gw.encode() + b"\x01")
    assert len(sc.hits) == 1
