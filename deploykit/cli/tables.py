"""Tables that fit the terminal: columns chosen by priority for the width, no cell ever cut.

A table is a list of ``Col`` (display order) and rows of strings. ``fit_table`` keeps the columns that fit the
console's width, most important first (``Col.priority``, lower first), and leaves out the rest, naming them in
the caption; ``wide`` keeps them all (the lines may then be longer than the terminal). Every column is
``no_wrap`` with ``overflow="fold"``: a cell is never shortened to "…"; the column set is what gives way. A
column of prose (a reason, a description) may instead wrap at word boundaries (``Col.wrap``: the narrowest it is
squeezed to). Lines printed to a pipe or a file carry no trailing spaces. Every command's table goes through here.
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
    wrap: int | None = None  # prose that may wrap at word boundaries, down to this many columns (None: one line)


def _cell(value) -> Text:
    return value if isinstance(value, Text) else Text(str(value))  # plain text: a label is never markup


def _table(cols: list[Col], rows: list[dict], title: str | None, caption: str | None,
           squeeze: bool = False) -> Table:
    t = Table(title=title, caption=caption, box=box.SIMPLE_HEAD, title_justify="left", caption_justify="left",
              pad_edge=False, collapse_padding=True, show_edge=False)
    for c in cols:
        t.add_column(c.header, justify="right" if c.right else "left", no_wrap=c.wrap is None, overflow="fold",
                     max_width=c.wrap if squeeze and c.wrap else None)
    for r in rows:
        t.add_row(*[_cell(r.get(c.key, "")) for c in cols])
    return t


def natural_width(cols: list[Col], rows: list[dict]) -> int:
    """The width the table needs to show every cell of ``cols`` whole (prose columns wrapped to their ``wrap``
    width; title and caption aside)."""
    buf = io.StringIO()
    Console(file=buf, width=100_000, color_system=None, legacy_windows=False).print(
        _table(cols, rows, None, None, squeeze=True))
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
    print_table(console, table, width)


def print_table(console: Console, table, width: int | None = None) -> None:
    """Print a rich renderable at ``width`` (the console's by default); to a pipe or a file without the trailing
    spaces rich pads lines with."""
    width = max(width or console.width, console.width)
    if width > console.width:
        console = Console(file=console.file, width=width, highlight=False, force_terminal=console.is_terminal)
    if console.is_terminal:
        console.print(table)
        return
    with console.capture() as cap:
        console.print(table)
    console.file.write("".join(line.rstrip() + "\n" for line in cap.get().splitlines()))
