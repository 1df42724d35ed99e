"""Alembic environment: runs against the engine handed over by `metis.db.migrate`."""

from alembic import context
from sqlalchemy import Engine

from metis.db.partitions import schema_compare_filter
from metis.db.tables import metadata

config = context.config
engine = config.attributes.get("engine")
if not isinstance(engine, Engine):  # pragma: no cover - only via metis.db.migrate
    from metis.db.engine import make_engine

    engine = make_engine()

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=schema_compare_filter(connection.dialect.name),
    )
    context.run_migrations()
