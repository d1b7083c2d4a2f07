"""What the migrations need beyond Alembic itself: its DDL implementation for DuckDB, and
operations that create, replace and drop SQL views.

Migrations never read the view files of queries/ (:mod:`stemstore.store.views`): a migration
that creates or changes a view freezes the view's SELECT as a module-level :class:`View`
constant, so that running an old migration builds that migration's view, not today's (Alembic
cookbook, "replaceable objects")::

    TABLE2 = View("table2", '''
    SELECT ...
    ''')

    def upgrade():
        op.replace_view(TABLE2, replaces="0002.TABLE2")     # or op.create_view(TABLE2)

    def downgrade():
        op.replace_view(TABLE2, replace_with="0002.TABLE2")  # or op.drop_view(TABLE2)

``"0002.TABLE2"`` names the constant ``TABLE2`` of migration ``0002``: the view's previous
frozen version. To change a view, edit its file in queries/ and add a migration that freezes
the new SELECT and replaces the previous one. Replacing drops and re-creates the view, so a
view that other views select from needs those dropped before and created again after.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from alembic.ddl.postgresql import PostgresqlImpl
from alembic.operations import MigrateOperation, Operations


class DuckDBImpl(PostgresqlImpl):
    """Alembic's DDL for DuckDB, which speaks PostgreSQL's DDL closely enough."""

    __dialect__ = "duckdb"


@dataclass(frozen=True)
class View:
    """A view as one migration builds it: its name and its SELECT, frozen in that migration."""

    name: str
    sqltext: str


class _ViewOp(MigrateOperation):
    def __init__(self, target: View) -> None:
        self.target = target

    @classmethod
    def invoke_for_target(cls, operations: Operations, target: View):
        return operations.invoke(cls(target))

    def reverse(self) -> _ViewOp:
        raise NotImplementedError

    @staticmethod
    def _from_revision(operations: Operations, ident: str) -> View:
        """The View constant ``ident`` = ``"<revision>.<CONSTANT>"`` of an earlier migration."""
        revision, constant = ident.split(".")
        module = operations.get_context().script.get_revision(revision).module
        return getattr(module, constant)

    @classmethod
    def replace(
        cls,
        operations: Operations,
        target: View,
        replaces: str | None = None,
        replace_with: str | None = None,
    ):
        """Upgrade: ``replaces`` the earlier version by ``target``. Downgrade: replace ``target``
        by the earlier version ``replace_with``."""
        if replaces:
            drop, create = cls(cls._from_revision(operations, replaces)).reverse(), cls(target)
        elif replace_with:
            drop, create = cls(target).reverse(), cls(cls._from_revision(operations, replace_with))
        else:
            raise TypeError("replace_view needs replaces= or replace_with=")
        operations.invoke(drop)
        operations.invoke(create)


@Operations.register_operation("create_view", "invoke_for_target")
@Operations.register_operation("replace_view", "replace")
class CreateViewOp(_ViewOp):
    def reverse(self) -> DropViewOp:
        return DropViewOp(self.target)


@Operations.register_operation("drop_view", "invoke_for_target")
class DropViewOp(_ViewOp):
    def reverse(self) -> CreateViewOp:
        return CreateViewOp(self.target)


@Operations.implementation_for(CreateViewOp)
def _create_view(operations: Operations, operation: CreateViewOp) -> None:
    # escaped: a colon in the SELECT ('12:00', x::int) is SQL, not a bind parameter
    sql = f"CREATE VIEW {operation.target.name} AS\n{operation.target.sqltext}"
    operations.execute(sa.text(sql.replace(":", "\\:")))


@Operations.implementation_for(DropViewOp)
def _drop_view(operations: Operations, operation: DropViewOp) -> None:
    operations.execute(f"DROP VIEW {operation.target.name}")
