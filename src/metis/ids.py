"""Prefixed ULID identifiers (``ws_…``, ``usr_…``, ``key_…``).

ULIDs sort by creation time, which keeps ids index-friendly and lets a person
read roughly when something was made.
"""

from ulid import ULID

PREFIXES = frozenset({"ws", "usr", "team", "key", "cred", "itok", "adm", "run", "evt", "req"})


def new_id(prefix: str) -> str:
    """Return ``<prefix>_<ulid>``; the prefix must be one of `PREFIXES`."""
    if prefix not in PREFIXES:
        raise ValueError(f"unknown id prefix {prefix!r}")
    return f"{prefix}_{ULID()}"
