"""Rendering DataFrames for the terminal and for other programs.

Data is printed literally: text that looks like rich markup (``[/]``, ``[bold]``) or an emoji
code (``:x:``) is shown as it is, never interpreted.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable
from enum import Enum
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:  # the caller has pandas loaded; `stemstore --help` need not load it
    import pandas as pd


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"
    markdown = "markdown"


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


#: Set by ``stemstore --raw-csv``: CSV text cells are written as they are, formulas and all.
RAW_CSV = {"on": False}


def render(frame: pd.DataFrame, fmt: Format = Format.table, *, title: str | None = None) -> None:
    """Print ``frame``: a rich table for people, csv/json/markdown for programs and documents.

    In CSV, text a spreadsheet would run as a formula is escaped with ``'`` unless --raw-csv."""
    if fmt == Format.csv:
        from stemstore.store.bulk import escape_formulas

        (frame if RAW_CSV["on"] else escape_formulas(frame)).to_csv(sys.stdout, index=False)
    elif fmt == Format.json:
        records = json.loads(frame.to_json(orient="records", double_precision=15))
        print(json.dumps(records, indent=2))
    elif fmt == Format.markdown:
        if title:
            print(f"### {title}\n")
        cells = [[_cell(v) for v in row] for row in frame.itertuples(index=False)]
        print("| " + " | ".join(map(str, frame.columns)) + " |")
        print("|" + "---|" * len(frame.columns))
        for row in cells:
            print("| " + " | ".join(row) + " |")
        print()
    else:
        from pandas.api.types import is_numeric_dtype

        table = Table(show_lines=False)
        for col in frame.columns:
            numeric = is_numeric_dtype(frame[col])
            # long feature names wrap rather than being cut: they are what a reader looks for
            table.add_column(Text(str(col)), justify="right" if numeric else "left", overflow="fold")
        for row in frame.itertuples(index=False):
            table.add_row(*(Text(_cell(v)) for v in row))
        console = Console()
        # in a pipe or a log, wide enough for a feature name per cell
        console = Console(
            width=console.width if console.is_terminal else 200, markup=False, emoji=False, highlight=False
        )
        if title:
            console.print(Text(title, style="bold"))
        console.print(table)
        if frame.empty:
            print("(no rows)")


def render_batches(columns: list[str], frames: Iterable[pd.DataFrame], fmt: Format = Format.table) -> None:
    """Print a result that arrives in batches: csv and json are written as the batches come
    (memory stays bounded whatever the size); a table or markdown is printed at the end."""
    import pandas as pd

    if fmt == Format.csv:
        from stemstore.store.bulk import escape_formulas

        header = True
        for frame in frames:
            (frame if RAW_CSV["on"] else escape_formulas(frame)).to_csv(
                sys.stdout, index=False, header=header
            )
            header = False
        if header:  # no rows: the header alone
            pd.DataFrame(columns=columns).to_csv(sys.stdout, index=False)
    elif fmt == Format.json:
        separator = "[\n"
        for frame in frames:
            for record in json.loads(frame.to_json(orient="records", double_precision=15)):
                sys.stdout.write(separator + "  " + json.dumps(record))
                separator = ",\n"
        sys.stdout.write("[]\n" if separator == "[\n" else "\n]\n")
    else:
        parts = list(frames)
        frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
        render(frame, fmt)
