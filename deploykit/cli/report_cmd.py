"""deploykit report: a results table (or a sweep folder) -> one self-contained HTML page or Markdown."""

from __future__ import annotations

from pathlib import Path

import click

from deploykit.cli.common import seed_option


@click.command("report")
@click.argument("results", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Report file: .html (one self-contained page) or .md (Markdown, its PNG plots in "
                   "<name>-plots/ beside it) [default: report.html in the sweep folder, or beside the table].")
@click.option("--plots", "plots_dir", type=click.Path(path_type=Path), default=None, metavar="DIR",
              help="Also write every plot as PNG and SVG into DIR (for READMEs).")
@click.option("--title", default=None, help="Page title [default: 'deploykit report: <sweep folder>'].")
@click.option("--n-boot", type=click.IntRange(min=100, max=1_000_000), default=1000, show_default=True,
              help="Bootstrap replicates for the CIs of the fitted exponents and crossovers.")
@seed_option(help="Seed of those bootstrap replicates.")
def command(results, output, plots_dir, title, n_boot, seed):
    """Render RESULTS (a sweep folder, a folder of bench reports, or a results .parquet/.csv table) as one
    self-contained HTML page, or
    Markdown with its plots as PNG files, with the analysis tables a scaling study needs.

    \b
    Header: the machine (from the cells' reports), the date, the cells ok and failed.
    Plots: latency vs resolution on log-log axes with the fitted complexity exponent k
    (latency ~ pixels^k) and its bootstrap CI; int8 speed-up; throughput vs batch; latency vs
    MACs and vs parameters with the Pareto front; memory; share of the machine's peak; attention
    share of MACs; ParC implementations. A plot whose data the table lacks is skipped, saying why.
    Tables: exponents, attention crossover by MACs and by measured time, the fastest ParC
    implementation per resolution, int8 speed-up per family and per model, every cell.

    The HTML page works offline: CSS and plots (SVG) inline, no script, nothing fetched. See
    docs/reports.md for the fit methods.
    """
    from deploykit.cli.common import stderr_console
    from deploykit.studyreport.analysis import find_table
    from deploykit.studyreport.report import write_report

    table = find_table(results)
    if output is None:  # a folder of bench reports is its own place
        output = (table if table.is_dir() else table.parent) / "report.html"
    summary = write_report(table, output, plots_dir=plots_dir, title=title, n_boot=n_boot, seed=seed)
    console = stderr_console()
    from rich.markup import escape

    cells = ", ".join(f"{v} {k}" for k, v in summary["cells"].items())
    console.print(f"{sum(summary['cells'].values())} cells ({escape(cells)}); "
                  f"{len(summary['plots'])} plots drawn")
    for name, why in summary["skipped"].items():
        console.print(f"  not drawn: {escape(name)}: {escape(why or '')}")
    console.print(f"wrote {escape(str(output))}")
    if plots_dir is not None:
        console.print(f"wrote {len(summary['plots'])} plots as PNG and SVG to {escape(str(plots_dir))}")
