"""Alembic environment: the same migrations run on DuckDB and PostgreSQL.

`stemstore init` passes an open connection in ``config.attributes["connection"]``; run by
hand, the URL comes from ``-x db=URL`` or alembic.ini.
"""

from alembic import context
from sqlalchemy import create_engine

import stemstore.migrations.operations  # noqa: F401  (registers Alembic's DuckDB implementation and view operations)
from stemstore.store.schema import Base

config = context.config
target_metadata = Base.metadata


def run_migrations(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("db") or config.get_main_option("sqlalchemy.url")
    with create_engine(url).connect() as conn:
        run_migrations(conn)
        conn.commit()
