from decimal import Decimal

import pytest

from metis.errors import ValidationError
from metis.identity.validate import (
    check_alias,
    check_team_name,
    email_sha256,
    normalize_email,
    parse_cap_usd,
    slugify,
)


@pytest.mark.parametrize(
    ("name", "slug"),
    [("Alice Liu", "alice-liu"), ("  Bob  ", "bob"), ("Zoë O'Neil", "zoe-o-neil"), ("!!!", "")],
)
def test_slugify(name: str, slug: str) -> None:
    assert slugify(name) == slug


@pytest.mark.parametrize("bad", ["", "a b", "usr_x", "x" * 201, "al;ce", "DROP TABLE"])
def test_bad_aliases(bad: str) -> None:
    with pytest.raises(ValidationError):
        check_alias(bad)


@pytest.mark.parametrize("bad", ["", "team_x", "a/b", "x" * 201])
def test_bad_team_names(bad: str) -> None:
    with pytest.raises(ValidationError):
        check_team_name(bad)


def test_email_rules_never_echo_the_address() -> None:
    assert normalize_email("  alice@org ") == "alice@org"
    for bad in ["alice", "alice@", "@org", "a@b@c", "a b@org", "x" * 400 + "@org"]:
        with pytest.raises(ValidationError) as exc:
            normalize_email(bad)
        assert bad.strip() not in exc.value.message or bad.strip() == ""
    assert email_sha256(" Alice@Org ") == email_sha256("alice@org")
    assert len(email_sha256("alice@org")) == 64


def test_caps_are_exact_nanousd() -> None:
    assert parse_cap_usd("50", "cap") == 50_000_000_000
    assert parse_cap_usd("0.001", "cap") == 1_000_000
    assert parse_cap_usd("0.000000001", "cap") == 1
    assert parse_cap_usd("1.0000000000000", "cap") == 1_000_000_000
    assert parse_cap_usd(Decimal("12.34"), "cap") == 12_340_000_000
    assert parse_cap_usd("0", "cap") == 0


@pytest.mark.parametrize("bad", ["-1", "-0.01", "abc", "NaN", "inf", "0.0000000001", "1e30", ""])
def test_bad_caps(bad: str) -> None:
    with pytest.raises(ValidationError) as exc:
        parse_cap_usd(bad, "--daily-cap-usd")
    assert exc.value.message.startswith("--daily-cap-usd")
