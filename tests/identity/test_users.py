import hashlib

import pytest
from sqlalchemy import Engine

from metis.errors import ConflictError, NotFoundError, ValidationError
from metis.identity import users
from metis.ledger import versions
from tests.identity.helpers import dump


def test_add_defaults_alias_to_slug_and_derives_email_hash(engine: Engine) -> None:
    with engine.begin() as conn:
        u = users.add_user(conn, "Alice Liu", email=" Alice@Example.org ")
    assert u.id.startswith("usr_") and len(u.id) == 30
    assert u.alias == "alice-liu" and u.display_name == "Alice Liu"
    assert u.email == "Alice@Example.org"
    assert u.email_sha256 == hashlib.sha256(b"alice@example.org").hexdigest()
    assert not u.disabled
    with engine.connect() as conn:
        assert users.get_user(conn, "alice-liu") == u
        assert users.get_user(conn, u.id) == u
        assert versions.read(conn, "identity") == 1


def test_no_email_means_no_hash(engine: Engine) -> None:
    with engine.begin() as conn:
        u = users.add_user(conn, "Bob", alias="bob")
    assert u.email is None and u.email_sha256 is None


def test_duplicate_alias_is_a_conflict_and_writes_nothing(engine: Engine) -> None:
    with engine.begin() as conn:
        users.add_user(conn, "Alice", alias="alice")
    before = dump(engine)
    with pytest.raises(ConflictError, match="alias 'alice' already exists"), engine.begin() as conn:
        users.add_user(conn, "Alice Two", alias="alice")
    assert dump(engine) == before


def test_unsluggable_name_needs_alias(engine: Engine) -> None:
    with pytest.raises(ValidationError, match="--alias"), engine.begin() as conn:
        users.add_user(conn, "???")
    with engine.begin() as conn:
        assert users.add_user(conn, "???", alias="q").alias == "q"


def test_disable_is_soft_and_idempotent(engine: Engine) -> None:
    with engine.begin() as conn:
        u = users.add_user(conn, "Alice", alias="alice")
        v = versions.read(conn, "identity")
        d = users.disable_user(conn, "alice")
        assert d.disabled and d.id == u.id
        assert versions.read(conn, "identity") == v + 1
        users.disable_user(conn, u.id)
        assert versions.read(conn, "identity") == v + 1  # nothing changed, no bump
        assert [x.alias for x in users.list_users(conn)] == ["alice"]
        assert users.list_users(conn, include_disabled=False) == []


def test_set_email_updates_hash_and_clears(engine: Engine) -> None:
    with engine.begin() as conn:
        users.add_user(conn, "Alice", alias="alice")
        v = versions.read(conn, "identity")
        u = users.set_email(conn, "alice", "a@org")
        assert u.email == "a@org" and u.email_sha256 == hashlib.sha256(b"a@org").hexdigest()
        assert versions.read(conn, "identity") == v + 1
        u = users.set_email(conn, "alice", None)
        assert u.email is None and u.email_sha256 is None


def test_unknown_user(engine: Engine) -> None:
    with engine.begin() as conn:
        with pytest.raises(NotFoundError, match="unknown user 'nobody'"):
            users.disable_user(conn, "nobody")
        with pytest.raises(NotFoundError):
            users.set_email(conn, "nobody", "a@b")
        assert users.find_user(conn, "nobody") is None


def test_alias_differing_only_in_case_is_a_duplicate(engine: Engine) -> None:
    with engine.begin() as conn:
        users.add_user(conn, "Alice", alias="alice")
    with pytest.raises(ConflictError, match="'alice' already exists"), engine.begin() as conn:
        users.add_user(conn, "Alice", alias="ALICE")
