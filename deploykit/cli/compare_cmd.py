"""deploykit compare: results side by side, with ratios to a baseline and a marker where the difference is real."""

from __future__ import annotations

from pathlib import Path

import click

from deploykit.cli.common import print_json, stdout_console
from deploykit.studyreport.compare import BY_CHOICES


@click.command("compare")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--by", type=click.Choice(BY_CHOICES), default=None,
              help="Pool the inputs and make one column per value of this key (target, precision, ...) "
                   "[default: one column per input].")
@click.option("--baseline", default=None, metavar="COLUMN",
              help="The column ratios are taken to (an input's name, or a value of --by) [default: the first].")
@click.option("--metric", default="p50_ms", show_default=True, metavar="COLUMN",
              help="A numeric results column: p50_ms, p99_ms, mean_ms, items_per_s, rss_peak_mb, gflops, ...")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Also write the comparison to this file: .md (a Markdown table) or .csv (one line per value).")
def command(inputs, by, baseline, metric, as_json, output):
    """Compare INPUTS side by side: report JSON files, folders of reports, or results tables (results.parquet /
    results.csv, or a sweep's folder).

    \b
    deploykit compare reports/sweeps/a reports/sweeps/b            one column per sweep
    deploykit compare reports/sweeps/demo --by target --baseline ort
    deploykit compare old.json new.json --metric p99_ms

    Rows are cells (model, options, target, precision, batch, resolution, threads) matched across the columns;
    each value is shown with its 95% CI (p50) and, but in the baseline column, its ratio to the baseline. A '*'
    marks a ratio whose bootstrap 95% CI (from the two runs' raw samples in their JSON reports) excludes 1; '*ci'
    one where the samples could not be read and the two medians' 95% CIs do not overlap instead.
    """
    from deploykit.core.errors import UsageError
    from deploykit.studyreport.compare import header_lines, load_inputs, table_rows, to_csv, to_markdown
    from deploykit.studyreport.compare import compare as run_compare

    if output is not None and output.suffix not in (".md", ".csv"):
        raise UsageError(f"-o {output}: write .md or .csv")
    result = run_compare(load_inputs(inputs), by=by, metric=metric, baseline=baseline)
    if output is not None:
        from deploykit.core.atomic import write_text

        write_text(output, to_markdown(result) if output.suffix == ".md" else to_csv(result))
    if as_json:
        print_json(result)
        return
    from rich.markup import escape
    from rich.table import Table

    head, body = table_rows(result)
    table = Table(title="deploykit compare: " + "; ".join(header_lines(result)[:1]))
    for i, h in enumerate(head):
        table.add_column(escape(h), justify="left" if i == 0 else "right")
    for line in body:
        table.add_row(*[escape(x) for x in line])
    con = stdout_console()
    con.print(table)
    for ln in header_lines(result)[1:] + result["notes"]:
        con.print(ln, highlight=False, markup=False)
    if output is not None:
        con.print(f"written: {output}", highlight=False, markup=False)
