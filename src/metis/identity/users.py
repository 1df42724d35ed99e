"""Users: the developers (or service accounts) gateway keys bill to.

A user is referenced by id (``usr_…``) or alias. Every mutation bumps the
``identity`` config version in the caller's transaction so gateway caches
reload. Disabling is a soft delete: the row stays (rollups keep joining to
it) and keys bound to it stop authenticating. There is deliberately no
re-enable path in v1.
"""

from sqlalchemy import Connection, func, select, update
from sqlalchemy.exc import IntegrityError

from metis.db.tables import users
from metis.errors import ConflictError, NotFoundError, ValidationError
from metis.identity.records import User, user_from_row
from metis.identity.teams import KEEP, _Keep
from metis.identity.validate import (
    check_alias,
    check_cap_nanousd,
    check_display_name,
    email_sha256,
    normalize_email,
    slugify,
)
from metis.ids import new_id
from metis.ledger import versions
from metis.timeutil import utcnow


def add_user(
    conn: Connection,
    name: str,
    *,
    email: str | None = None,
    alias: str | None = None,
    daily_cap_nanousd: int | None = None,
    monthly_cap_nanousd: int | None = None,
) -> User:
    """Create a user; ``alias`` defaults to a slug of ``name`` and must be unique.

    Caps are optional hard caps in nano-USD (UTC day / UTC calendar month).
    """
    display = check_display_name(name)
    daily = check_cap_nanousd(daily_cap_nanousd, "daily cap")
    monthly = check_cap_nanousd(monthly_cap_nanousd, "monthly cap")
    if alias is None:
        alias = slugify(display)
        if not alias:
            raise ValidationError(f"cannot derive an alias from {display!r}: pass --alias")
    check_alias(alias)
    clean_email = normalize_email(email) if email is not None else None
    clash = conn.execute(
        select(users.c.alias).where(func.lower(users.c.alias) == alias.lower())
    ).scalar()
    if clash is not None:
        # Aliases that differ only in case would be a trap when typing --user.
        raise ConflictError(f"user alias {clash!r} already exists")
    user = User(
        id=new_id("usr"),
        alias=alias,
        display_name=display,
        email=clean_email,
        email_sha256=email_sha256(clean_email) if clean_email else None,
        created_at=utcnow(),
        disabled=False,
        daily_cap_nanousd=daily,
        monthly_cap_nanousd=monthly,
    )
    try:
        with conn.begin_nested():
            conn.execute(
                users.insert().values(
                    id=user.id,
                    alias=user.alias,
                    display_name=user.display_name,
                    email=user.email,
                    email_sha256=user.email_sha256,
                    created_at=user.created_at,
                    disabled=False,
                    daily_cap_nanousd=daily,
                    monthly_cap_nanousd=monthly,
                )
            )
    except IntegrityError:  # a concurrent writer took the alias
        raise ConflictError(f"user alias {alias!r} already exists") from None
    versions.bump(conn, "identity")
    return user


def find_user(conn: Connection, ref: str) -> User | None:
    """The user with id or alias ``ref``, or None."""
    row = (
        conn.execute(select(users).where((users.c.id == ref) | (users.c.alias == ref)))
        .mappings()
        .first()
    )
    return None if row is None else user_from_row(row)


def get_user(conn: Connection, ref: str) -> User:
    """Like `find_user` but an unknown ``ref`` is a `NotFoundError`."""
    user = find_user(conn, ref)
    if user is None:
        raise NotFoundError(f"unknown user {ref!r} (see `metis gateway user list`)")
    return user


def list_users(conn: Connection, *, include_disabled: bool = True) -> list[User]:
    """Users ordered by alias."""
    q = select(users).order_by(users.c.alias)
    if not include_disabled:
        q = q.where(users.c.disabled.is_(False))
    return [user_from_row(r) for r in conn.execute(q).mappings()]


def disable_user(conn: Connection, ref: str) -> User:
    """Soft-delete a user: its keys fail auth from the next request on (idempotent)."""
    user = get_user(conn, ref)
    if not user.disabled:
        conn.execute(update(users).where(users.c.id == user.id).values(disabled=True))
        versions.bump(conn, "identity")
    return get_user(conn, user.id)


def set_email(conn: Connection, ref: str, email: str | None) -> User:
    """Set (or, with None, clear) a user's email and its derived hash."""
    user = get_user(conn, ref)
    clean = normalize_email(email) if email is not None else None
    conn.execute(
        update(users)
        .where(users.c.id == user.id)
        .values(email=clean, email_sha256=email_sha256(clean) if clean else None)
    )
    versions.bump(conn, "identity")
    return get_user(conn, user.id)


def set_caps(
    conn: Connection,
    ref: str,
    *,
    daily_cap_nanousd: int | _Keep | None = KEEP,
    monthly_cap_nanousd: int | _Keep | None = KEEP,
) -> User:
    """Change a user's hard caps: an int sets, None clears, `KEEP` (default) leaves as is.

    The caps count the user's spend over all their keys (``user_daily`` per UTC
    day, ``user_monthly`` per UTC calendar month), are enforced by the gateway
    like team caps (429 with ``scope``), and take effect on its next request
    (the identity version moves).
    """
    values: dict[str, int | None] = {}
    if not isinstance(daily_cap_nanousd, _Keep):
        values["daily_cap_nanousd"] = check_cap_nanousd(daily_cap_nanousd, "daily cap")
    if not isinstance(monthly_cap_nanousd, _Keep):
        values["monthly_cap_nanousd"] = check_cap_nanousd(monthly_cap_nanousd, "monthly cap")
    if not values:
        raise ValidationError("nothing to change: give a daily and/or monthly cap")
    user = get_user(conn, ref)
    conn.execute(update(users).where(users.c.id == user.id).values(**values))
    versions.bump(conn, "identity")
    return get_user(conn, user.id)
