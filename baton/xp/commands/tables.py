"""The tables `baton ls` and `baton grid` print: a rich table on a terminal, or CSV / Markdown
(`--format`) for a spreadsheet, a script or a report. Cells are given raw; each format
writes numbers its own way (CSV at full precision, the others rounded)."""

from __future__ import annotations

import argparse
import csv
import io
from collections.abc import Sequence
from typing import Any

from baton.xp.commands.common import STATUS_STYLE, format_number

FORMATS = ("table", "csv", "markdown")


def add_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format", choices=FORMATS, default="table",
        help="table (default), csv (full precision) or markdown (a pipe table)",
    )


def render(fmt: str, title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]], *, right: Sequence[str] = ()) -> Any:
    """A rich Table (`table`), or the text of a CSV or Markdown table. A column named 'status'
    or 'state' is coloured in the rich table."""
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(headers)
        writer.writerows([["" if v is None else (repr(v) if isinstance(v, float) else v) for v in row] for row in rows])
        return out.getvalue().rstrip("\n")
    cells = [[format_number(v) for v in row] for row in rows]
    if fmt == "markdown":
        lines = [f"**{title}**", "", "| " + " | ".join(headers) + " |"]
        lines.append("| " + " | ".join("---:" if h in right else "---" for h in headers) + " |")
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
        return "\n".join(lines)
    from rich.table import Table

    table = Table(title=title)
    for header in headers:
        table.add_column(header, justify="right" if header in right else "left")
    coloured = {i for i, h in enumerate(headers) if h in ("status", "state")}
    for row in cells:
        table.add_row(*(f"[{STATUS_STYLE[c]}]{c}[/]" if i in coloured and c in STATUS_STYLE else c for i, c in enumerate(row)))
    return table
