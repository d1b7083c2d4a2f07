"""SQL views: each is one file in ``queries/`` (shipped in the package as stemstore.queries),
a plain SELECT a reader can run by hand; reports read their titles and sort order from it.

Migrations never read those files: a migration that creates or changes a view freezes the
view's SELECT as a module-level :class:`View` constant, so that running an old migration
builds that migration's view, not today's (Alembic cookbook, "replaceable objects")::

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
from importlib import resources

import sqlalchemy as sa
from alembic.operations import MigrateOperation, Operations


def view_sql(name: str) -> str:
    """The SELECT of the view ``name`` (the file queries/<name>.sql), as the file is now."""
    return resources.files("stemstore.queries").joinpath(f"{name}.sql").read_text()


def _directive(name: str, key: str) -> str | None:
    """The value of a ``-- key: value`` comment line of a view's file."""
    for line in view_sql(name).splitlines():
        if line.lower().startswith(f"-- {key}:"):
            return line.split(":", 1)[1].strip()
    return None


def report_order(name: str) -> list[str]:
    """The columns a report sorts by: the file's ``-- report order: a, b`` line."""
    return [c.strip() for c in (_directive(name, "report order") or "").split(",") if c.strip()]


def report_title(name: str) -> str:
    """The heading a report prints: the file's ``-- title:`` line, else its name."""
    return _directive(name, "title") or name


def view_names() -> list[str]:
    return sorted(
        p.name[:-4] for p in resources.files("stemstore.queries").iterdir() if p.name.endswith(".sql")
    )


# -- views in migrations -------------------------------------------------------------------
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
