"""One escaping function per output format for text deploykit did not write itself (model names, file names,
labels, reasons taken from a table or a report): what a user or a file names is shown as text, never run as markup.

* ``md``: Markdown text and table cells: HTML (``<img>``, ``<script>``), links and images (``[..](..)``,
  ``javascript:``), code spans, emphasis and table pipes are shown literally; line breaks become spaces (a newline
  would end a table row).
* ``csv_cell``: a spreadsheet cell: a text starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is
  a formula to Excel / LibreOffice / Sheets; it gets a leading ``'`` (numbers are left alone).
* matplotlib: ``$`` starts mathtext in a label (an odd ``$`` raises); studyreport/plots.py turns mathtext off
  for every figure (``text.parse_math``), so labels are text.
* HTML: ``html.escape`` (studyreport/html.py already escapes every text it writes).
"""

from __future__ import annotations

import math
import re

# what makes Markdown out of text: HTML, links / images, code spans, emphasis, table pipes, math ($ on GitHub)
_MD_SPECIAL = re.compile(r"([\\`*\[\]<>|$])")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def md(text) -> str:
    """``text`` as literal Markdown (inline or a table cell)."""
    s = " ".join(str(text).replace("\r", " ").split("\n")) if text is not None else ""
    s = s.replace("&", "&amp;")
    return _MD_SPECIAL.sub(lambda m: {"<": "&lt;", ">": "&gt;"}.get(m.group(1), "\\" + m.group(1)), s)


def csv_cell(value):
    """``value`` for a CSV cell: text that a spreadsheet would run as a formula gets a leading ``'``."""
    if not isinstance(value, str) or not value.startswith(_FORMULA_START):
        return value
    try:
        if math.isfinite(float(value)):
            return value  # a number such as -1.5 is a number
    except ValueError:
        pass
    return "'" + value
