"""Fixtures of the database tests."""

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from metis.db.engine import make_engine, normalize_url
from tests.conftest import PG_BASE


@pytest.fixture
def empty_engine(tmp_path: Path) -> Iterator[Engine]:
    """An engine on a new, empty database of the test backend (dropped afterwards)."""
    if not PG_BASE:
        eng = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
        yield eng
        eng.dispose()
        return
    base = normalize_url(PG_BASE)
    name = f"metis_mig_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    eng = make_engine(make_url(base).set(database=name).render_as_string(hide_password=False))
    try:
        yield eng
    finally:
        eng.dispose()
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
