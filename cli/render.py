"""Rendering DataFrames for the terminal and for other programs."""

from __future__ import annotations

import json
import math
import sys
from enum import Enum

import pandas as pd
from rich.console import Console
from rich.table import Table


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
        table = Table(show_lines=False)
        for col in frame.columns:
            numeric = pd.api.types.is_numeric_dtype(frame[col])
            # long feature names wrap rather than being cut: they are what a reader looks for
            table.add_column(str(col), justify="right" if numeric else "left", overflow="fold")
        for row in frame.itertuples(index=False):
            table.add_row(*(_cell(v) for v in row))
        console = Console()
        # in a pipe or a log, wide enough for a feature name per cell
        console = Console(width=console.width if console.is_terminal else 200)
        if title:
            console.print(title, style="bold", highlight=False)
        console.print(table)
        if frame.empty:
            print("(no rows)")
