"""deploykit run: measure one run spec file (what a sweep's or a Slurm node's child runs)."""

from __future__ import annotations

from pathlib import Path

import click

from deploykit.cli.common import models_dir_option, reports_dir_option, resolve_reports_dir


@click.command("run")
@click.argument("spec_file", metavar="SPEC.json", type=click.Path(path_type=Path))
@models_dir_option
@reports_dir_option
@click.option("--format", "formats", default="json,md,csv", show_default=True,
              help="Report files to write (latency runs; a LoadGen run writes its JSON and Markdown).")
@click.option("--no-save", is_flag=True, help="Write no report files.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report to stdout.")
def command(spec_file, models_dir, report_dir, formats, no_save, as_json):
    """Measure the run described by SPEC.json: a run spec (model and its options, target and its options,
    precision with the int8 recipe, batch, resolution, and the measurement: a latency stop rule or a LoadGen
    scenario), as 'deploykit sweep' writes one per cell (OUT/cells/<cell>/spec.json). The same checks and the
    same measurement as 'deploykit bench' (or 'deploykit loadgen') with those settings."""
    from deploykit.bench.plan import plan_runs
    from deploykit.spec.run import read_spec

    spec = read_spec(spec_file)
    reports_dir = None if no_save else resolve_reports_dir(report_dir)
    if spec.loadgen:
        from deploykit.cli import loadgen_cmd
        from deploykit.core.lazy import require

        require("mlperf_loadgen", "deploykit run (a LoadGen run spec)")
        loadgen_cmd.execute(plan_runs([spec])[0], models_dir=models_dir, reports_dir=reports_dir, as_json=as_json)
        return
    from deploykit.cli import bench_cmd

    bench_cmd.execute(plan_runs([spec]), models_dir=models_dir, reports_dir=reports_dir,
                      formats=bench_cmd.report_formats(formats), as_json=as_json)
