"""The store: one relational schema on DuckDB or PostgreSQL, and everything that reads or writes it.

- :mod:`~stemstore.store.schema`: the tables (SQLAlchemy models); changed only by migrations;
- :mod:`~stemstore.store.catalog`: the 1812-feature catalog the ``features`` table is seeded with;
- :mod:`~stemstore.store.connection`: :class:`~stemstore.store.connection.Store`, opening,
  migrating and querying a store;
- :mod:`~stemstore.store.bulk`: bulk reads and writes (wide feature matrices, import, export);
- :mod:`~stemstore.store.views`: the SQL views, versioned with the migrations.

Nothing here imports a pipeline stage: the stages build on the store, never the reverse.
"""
