"""Alembic environment of the run catalog: online migrations on a connection handed in by the caller.

``fuxiops.pipeline.cycle.runs.migrate`` passes an open SQLAlchemy connection in
``config.attributes["connection"]``; the ``alembic`` command line (with an
``sqlalchemy.url`` option) works too.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from fuxiops.pipeline.cycle.runs import metadata

config = context.config


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as conn:
        _run(conn)


if context.is_offline_mode():  # pragma: no cover - SQL script generation
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=metadata,
                      literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
