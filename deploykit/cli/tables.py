"""Tables that fit the terminal: columns chosen by priority for the width, no cell ever cut.

A table is a list of ``Col`` (display order) and rows of strings. ``fit_table`` keeps the columns that fit the
console's width, most important first (``Col.priority``, lower first), and leaves out the rest, naming them in
the caption; ``wide`` keeps them all (the lines may then be longer than the terminal). Every column is
``no_wrap`` with ``overflow="fold"``: a cell is never shortened to "…"; the column set is what gives way.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text


@dataclass(frozen=True)
class Col:
    key: str
    header: str
    right: bool = False  # right-justified (numbers)
    priority: int = 100  # lower = kept first when the width is short


def _table(cols: list[Col], rows: list[dict], title: str | None, caption: str | None) -> Table:
    t = Table(title=title, caption=caption, box=box.SIMPLE_HEAD, title_justify="left", caption_justify="left",
              pad_edge=False, collapse_padding=True, show_edge=False)
    for c in cols:
        t.add_column(c.header, justify="right" if c.right else "left", no_wrap=True, overflow="fold")
    for r in rows:
        t.add_row(*[Text(str(r.get(c.key, ""))) for c in cols])  # plain text: a label is never markup
    return t


def natural_width(cols: list[Col], rows: list[dict]) -> int:
    """The width the table needs to show every cell of ``cols`` on one line (title and caption aside)."""
    buf = io.StringIO()
    Console(file=buf, width=100_000, color_system=None, legacy_windows=False).print(_table(cols, rows, None, None))
    return max((len(line.rstrip()) for line in buf.getvalue().splitlines()), default=0)


def choose_columns(cols: list[Col], rows: list[dict], width: int) -> list[Col]:
    """The columns to show at ``width``: by priority, each one kept when the table still fits with it (so a
    narrow column of lower priority may still come in after a wide one was left out); display order kept.
    The first column by priority is always kept."""
    keep: set[str] = set()
    for c in sorted(cols, key=lambda c: c.priority):
        trial = [x for x in cols if x.key in keep or x.key == c.key]
        if not keep or natural_width(trial, rows) <= width:
            keep.add(c.key)
    return [c for c in cols if c.key in keep]


def fit_table(cols: list[Col], rows: list[dict], *, width: int, wide: bool = False, title: str | None = None,
              caption: str | None = None, hidden_note: str = "--wide shows them") -> tuple[Table, int]:
    """(the table, the console width to print it at). Leaves out the columns that do not fit ``width`` unless
    ``wide``, and says which in the caption."""
    shown = cols if wide else choose_columns(cols, rows, width)
    hidden = [c.header for c in cols if c not in shown]
    notes = [caption] if caption else []
    if hidden:
        notes.append(f"not shown at {width} columns: {', '.join(hidden)} ({hidden_note})")
    need = natural_width(shown, rows)
    return _table(shown, rows, title, "\n".join(notes) or None), max(width, need) if wide else width


def print_fitted(console: Console, cols: list[Col], rows: list[dict], *, wide: bool = False, **kw) -> None:
    """Print ``fit_table`` on ``console`` at its width (wider with ``wide`` when the table needs it)."""
    table, width = fit_table(cols, rows, width=console.width, wide=wide, **kw)
    if width > console.width:
        console = Console(file=console.file, width=width, highlight=False, force_terminal=console.is_terminal)
    console.print(table)
