from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

from metis.db.migrate import current_revision, head_revision, upgrade
from metis.db.tables import metadata
from tests.conftest import BACKEND


def test_backend_is_the_one_requested(engine: Engine) -> None:
    # With METIS_TEST_DATABASE_URL set this must really be a PostgreSQL server.
    assert engine.dialect.name == BACKEND
    with engine.connect() as c:
        if BACKEND == "postgresql":
            assert c.exec_driver_sql("select version()").scalar_one().startswith("PostgreSQL")
        else:
            assert c.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
            assert c.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1


def test_migrations_produce_exactly_the_declared_schema(engine: Engine) -> None:
    with engine.connect() as c:
        diff = compare_metadata(
            MigrationContext.configure(c, opts={"compare_type": True}), metadata
        )
    assert diff == []


def test_upgrade_is_idempotent(engine: Engine) -> None:
    assert current_revision(engine) == head_revision()
    before = sorted(inspect(engine).get_table_names())
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert sorted(inspect(engine).get_table_names()) == before
    assert {"usage_records", "events", "spend_counters", "leases"} <= set(before)
