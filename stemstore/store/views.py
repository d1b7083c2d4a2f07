"""SQL views: each is one file in ``queries/`` (shipped in the package as stemstore.queries),
a plain SELECT a reader can run by hand; reports read their titles and sort order from it.

Migrations never read those files: a migration freezes each view's SELECT as it was then
(:class:`stemstore.migrations.operations.View`), so that an old migration builds that
migration's view, not today's. To change a view, edit its file in queries/ and add a migration
that freezes the new SELECT and replaces the previous one.
"""

from __future__ import annotations

from importlib import resources


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
