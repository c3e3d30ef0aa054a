"""Tables that fit: whole columns are dropped by priority until the table fits the width, so
the columns that matter (a backbone's name, its top-1, its weights) are never cut to `…`.

Rich would rather squeeze every column; a cut name or a `RAND…` flag is worse than a missing
column, and a note says which columns were left out and how to see them.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.table import Table
from rich.text import Text


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    #: Lower is kept longer; 0 is never dropped.
    priority: int = 5
    justify: str = "right"


def _width(markup: str) -> int:
    return max((Text.from_markup(line).cell_len for line in markup.splitlines()), default=0)


def table_width(widths: list[int]) -> int:
    """Rich's width for columns of these widths: one space of padding each side, one rule between."""
    return sum(widths) + 3 * len(widths) + 1


def fit(columns: list[Column], rows: list[list[str]], width: int | None) -> tuple[list[int], list[Column]]:
    """Indexes of the columns to keep so the table fits `width` (None: all), and those dropped,
    dropping the highest priority number first, the rightmost among equals."""
    widths = [max([_width(column.header)] + [_width(row[i]) for row in rows]) for i, column in enumerate(columns)]
    kept = list(range(len(columns)))
    dropped: list[int] = []
    by_priority = sorted(kept, key=lambda i: (columns[i].priority, i), reverse=True)
    for index in by_priority:
        if width is None or table_width([widths[i] for i in kept]) <= width:
            break
        if columns[index].priority == 0:
            break
        kept.remove(index)
        dropped.append(index)
    for index in reversed(list(dropped)):  # a narrow column dropped early may fit again
        if table_width([widths[i] for i in sorted([*kept, index])]) <= width:  # type: ignore[operator]
            kept = sorted([*kept, index])
            dropped.remove(index)
    return kept, [columns[index] for index in dropped]


def fitted_table(
    columns: list[Column], rows: list[list[str]], width: int | None, title: str | None = None
) -> tuple[Table, list[Column]]:
    """A rich table of `rows` (markup strings) that fits `width`, and the columns left out."""
    kept, dropped = fit(columns, rows, width)
    table = Table(title=title)
    for index in kept:
        column = columns[index]
        # The first column (a name) folds onto more lines where even the protected ones do not fit:
        # a long ensemble name then takes two lines rather than cutting the weights to `imagen…`.
        wrap = {"no_wrap": False, "overflow": "fold"} if index == 0 else {"no_wrap": True}
        table.add_column(column.header, justify=column.justify, **wrap)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(*(row[index] for index in kept))
    return table, dropped


def dropped_note(dropped: list[Column], how: str) -> str:
    """One line saying which columns did not fit and how to see them."""
    return f"Left out to fit the terminal: {', '.join(column.header for column in dropped)}; {how}."
