"""Input rules for identity names, emails and money caps (one-line errors).

Aliases and team names match ``^[A-Za-z0-9_-]{1,200}$`` - the same guard the
analytics filters apply - and may not look like an id of their kind
(``usr_…`` / ``team_…``), so a reference resolves unambiguously.
"""

import hashlib
import re
import unicodedata
from decimal import Decimal, InvalidOperation

from metis.errors import ValidationError
from metis.money import NANOS_PER_USD, to_nanousd

NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,200}$")
# Deliberately loose (the spec's own example is "alice@org"): one '@', no
# whitespace, text on both sides. Anything stricter rejects real addresses.
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+$")
MAX_EMAIL_LEN = 320
# Largest cap that fits the BigInteger nano-USD columns with headroom.
MAX_CAP_NANOUSD = 10**18


def check_alias(alias: str) -> str:
    """Validate a user alias (case-preserving, compared exactly)."""
    if not NAME_RE.match(alias):
        raise ValidationError(
            f"invalid alias {alias!r}: use letters, digits, '_' or '-' (1-200 chars)"
        )
    if alias.startswith("usr_"):
        raise ValidationError(f"invalid alias {alias!r}: must not start with 'usr_' (ids do)")
    return alias


def check_team_name(name: str) -> str:
    """Validate a team name."""
    if not NAME_RE.match(name):
        raise ValidationError(
            f"invalid team name {name!r}: use letters, digits, '_' or '-' (1-200 chars)"
        )
    if name.startswith("team_"):
        raise ValidationError(f"invalid team name {name!r}: must not start with 'team_' (ids do)")
    return name


def check_display_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 200 or any(unicodedata.category(c) == "Cc" for c in name):
        raise ValidationError("invalid name: 1-200 printable characters")
    return name


def slugify(name: str) -> str:
    """``"Alice Liu"`` -> ``"alice-liu"``: the default alias of a user."""
    ascii_ = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_.lower()).strip("-")
    return slug[:200].rstrip("-")


def normalize_email(email: str) -> str:
    """Trim and validate an email; the message never repeats the address (PII)."""
    email = email.strip()
    if len(email) > MAX_EMAIL_LEN or not EMAIL_RE.match(email):
        raise ValidationError(
            "invalid email: expected one '@' with text on both sides and no spaces"
        )
    return email


def email_sha256(email: str) -> str:
    """SHA-256 hex of the lower-cased, trimmed email (for join-by-email imports)."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


def parse_cap_usd(value: str | Decimal | int, field: str) -> int:
    """A non-negative USD amount (at most 9 decimals) as nano-USD; errors name ``field``."""
    if isinstance(value, float):
        raise TypeError("money must not be a float")
    try:
        d = Decimal(str(value).strip()) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise ValidationError(f"{field}: not a decimal amount: {value!r}") from None
    if not d.is_finite():
        raise ValidationError(f"{field}: not a finite amount: {value!r}")
    if d < 0:
        raise ValidationError(f"{field}: must not be negative (got {value})")
    if d > Decimal(MAX_CAP_NANOUSD) / NANOS_PER_USD:
        raise ValidationError(f"{field}: too large (max {MAX_CAP_NANOUSD // 10**9} USD)")
    scaled = d * NANOS_PER_USD
    if scaled != scaled.to_integral_value():
        raise ValidationError(f"{field}: at most 9 decimal places (nano-USD)")
    return to_nanousd(d)


def check_cap_nanousd(value: int | None, field: str) -> int | None:
    """Validate a cap already in nano-USD (library callers); None means no cap."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{field} must be int nano-USD")
    if value < 0:
        raise ValidationError(f"{field}: must not be negative")
    if value > MAX_CAP_NANOUSD:
        raise ValidationError(f"{field}: too large (max {MAX_CAP_NANOUSD // 10**9} USD)")
    return value
