"""The study report as Markdown (``deploykit report -o report.md``): the sections of sections.py, each rendered
the same way, with the plots as PNG files beside the text. Strings are HTML-escaped (a Markdown viewer renders
inline HTML) and table cells cannot break their table."""

from __future__ import annotations


import pandas as pd

from deploykit import __version__
from deploykit.studyreport.sections import (Column, ReportData, Section, build_sections, created_range, is_numeric,
                                            machine_lines, status_counts)


def md_escape(text: str) -> str:
    from deploykit.core.escape import md  # the one Markdown escaping (HTML, links, images, pipes, newlines)

    return md(text)


def md_table(df: pd.DataFrame, columns: list[Column]) -> str:
    lines = ["| " + " | ".join(md_escape(h) for h, _ in columns) + " |",
             "|" + "|".join("---:" if is_numeric(h) else "---" for h, _ in columns) + "|"]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(md_escape(f(r)) for _, f in columns) + " |")
    return "\n".join(lines)


def render_markdown(rd: ReportData, image_dir: str) -> tuple[str, dict[str, bytes]]:
    """(Markdown text, {file name: PNG bytes}); the text links the images as ``image_dir/<name>.png``."""
    df = rd.df
    out = [f"# {md_escape(rd.title)}", "",
           f"Generated {rd.generated} by deploykit {__version__} from `{rd.source.replace('`', '')}`."]
    created = created_range(df)
    if created:
        out.append(f"Cells measured {md_escape(created)}.")
    out.append("")
    out += [f"- {md_escape(line)}" for line in machine_lines(rd)]
    counts = status_counts(df)
    out += ["", f"**{sum(counts.values())} cells**: " + ", ".join(f"{v} {k}" for k, v in counts.items()), ""]
    images: dict[str, bytes] = {}
    for s in build_sections(rd):
        out += section_markdown(s, image_dir, images)
    return "\n".join(out), images


def section_markdown(s: Section, image_dir: str, images: dict[str, bytes], level: int = 2) -> list[str]:
    """One section as Markdown blocks (each followed by a blank line); its drawn plots are added to ``images``."""
    out = [f"{'#' * level} {md_escape(s.title)}", ""]
    for t in s.notes + s.text:
        out += [md_escape(t), ""]
    if s.plots:
        from deploykit.studyreport.plots import png

        for p in s.plots:
            if p.figure is None:
                out += [f"*Not drawn: {md_escape(p.title)} — {md_escape(p.skipped or '')}.*", ""]
                continue
            images[f"{p.name}.png"] = png(p.figure)
            out += [f"{'#' * (level + 1)} {md_escape(p.title)}", "",
                    f"![{md_escape(p.title)}]({image_dir}/{p.name}.png)", "", md_escape(p.caption), ""]
    for anchor, what, why in s.missing:
        out += [f"*Not {'drawn' if not anchor.startswith('skipped-section-') else 'shown'}: {md_escape(what)} — "
                f"{md_escape(why)}.*", ""]
    if s.table is not None:
        out += [md_table(s.table.df, s.table.columns), ""]
    elif s.skipped:
        out += [f"*{md_escape(s.skipped)}*", ""]
    for t in s.after:
        out += [md_escape(t), ""]
    for part in s.parts:
        out += section_markdown(part, image_dir, images, level + 1)
    return out
