"""deploykit history: the latency series kept across runs and commits (history/), their steps, and bisect."""

from __future__ import annotations

from pathlib import Path

import click

from deploykit.cli.common import FiniteFloatRange


def history_option(help_text: str | None = None):
    return click.option("--history", "history", type=click.Path(path_type=Path), default=None, metavar="PATH",
                        help=help_text or "History store (SQLite) [default: $DEPLOYKIT_HISTORY or "
                                          "<reports>/history.sqlite].")


def record(history: Path | None, reports: list[dict] | None = None, *, reports_dir: Path | None = None,
           folder: Path | None = None, kind: str = "bench") -> None:
    """The commands' hook: append ``reports`` (bench/gate documents, written under ``reports_dir``) or every report
    under ``folder`` (a sweep's cells) to the store at ``history`` (or $DEPLOYKIT_HISTORY when set); nothing when
    neither is given."""
    import os

    if history is None and not os.environ.get("DEPLOYKIT_HISTORY"):
        return
    from deploykit.cli.common import stderr_console
    from deploykit.history.records import current_commit, import_folder, report_path, rows_from_report
    from deploykit.history.store import Store, default_path

    path = history or default_path()
    commit = current_commit()
    if folder is None:
        rows = [r for doc in reports or [] for r in rows_from_report(doc, kind=kind, commit=commit,
                                                                     path=report_path(doc, reports_dir))]
        if not rows:  # e.g. a gate whose checks all failed: nothing measured, nothing to say
            return
    with Store(path) as store:
        if folder is not None:
            _, added, _ = import_folder(store, folder, kind=kind, commit=commit) if folder.is_dir() else (0, 0, [])
        else:
            added = store.append(rows)
    stderr_console().print(f"[dim]history: {added} run(s) appended to {path}[/]")


class _DefaultShow(click.Group):
    """``deploykit history [MODEL] ...`` is ``deploykit history show [MODEL] ...``; ``import`` is a subcommand."""

    def parse_args(self, ctx, args):
        if not args or (args[0] not in self.commands and args[0] not in ("-h", "--help")):
            args = ["show", *args]
        return super().parse_args(ctx, args)


@click.group("history", cls=_DefaultShow)
def command() -> None:
    """Latency series kept across runs and commits: 'deploykit history [MODEL]' shows them (the 'show'
    subcommand); 'bench', 'gate' and 'sweep' append with --history PATH (or $DEPLOYKIT_HISTORY)."""


@command.command("show")
@click.argument("model", required=False)
@click.option("-t", "--target", default=None, help="Only this target.")
@click.option("--precision", default=None, help="Only this precision (fp32, fp16, int8 ...).")
@click.option("--batch", type=click.IntRange(min=1), default=None, help="Only this batch size.")
@click.option("--resolution", type=click.IntRange(min=1), default=None, help="Only this resolution.")
@click.option("--machine", default=None, help="Only machine classes containing this text (CPU model, ISA, t<threads>).")
@click.option("--normalize", is_flag=True,
              help="Relative cost (model / reference workload refnet-v1, from --reference-workload runs) instead of "
                   "ms: one series across machines.")
@click.option("--last", type=click.IntRange(min=2), default=None, help="Only the last N points of each series.")
@click.option("--steps/--no-steps", default=None,
              help="Detect steps (change points) in each series (the 'history' extra: ruptures) [default: when "
                   "ruptures is installed, else a note says how to get it].")
@click.option("--penalty", type=FiniteFloatRange(min=0, min_open=True), default=3.0, show_default=True,
              help="Change-point penalty x log(points), in units of the noise variance: higher, fewer steps.")
@click.option("--alpha", type=FiniteFloatRange(min=0, max=1, min_open=True, max_open=True), default=0.01,
              show_default=True, help="Significance level of each step's Welch t-test.")
@click.option("--min-change", metavar="PCT", default="1%", show_default=True, help="Smallest step reported.")
@click.option("--html", "html_out", type=click.Path(path_type=Path), default=None,
              help="Write an offline HTML page of trend plots (CIs, commit and date on the axis).")
@click.option("--markdown", "md_out", type=click.Path(path_type=Path), default=None,
              help="Write a Markdown summary ('-': stdout).")
@click.option("--github-summary", is_flag=True, help="Append the Markdown summary to $GITHUB_STEP_SUMMARY.")
@click.option("--fail-on-step", is_flag=True,
              help="Exit 4 when the last step of a series is a regression (CI: a new step appeared).")
@click.option("--wide", is_flag=True, help="Show every column of the table, however wide.")
@click.option("--json", "as_json", is_flag=True, help="Print the series and steps as JSON.")
@history_option()
def show(model, target, precision, batch, resolution, machine, normalize, last, steps, penalty, alpha, min_change,
         html_out, md_out, github_summary, fail_on_step, wide, as_json, history):
    """The series per (run spec key, machine class) with their detected steps: a table, or --html / --markdown."""
    import os

    from deploykit.cli.common import print_json, stderr_console, stdout_console
    from deploykit.core.errors import EXIT_REGRESSION, UsageError
    from deploykit.history.store import Store, default_path
    from deploykit.history.view import find_steps, html_page, markdown, select, series_rows, step_rows

    try:
        min_frac = float(min_change.rstrip("%")) / (100 if min_change.endswith("%") else 1)
    except ValueError:
        raise UsageError(f"--min-change {min_change!r}: give a percentage such as 2%") from None
    for out in (html_out, md_out if md_out and str(md_out) != "-" else None):
        if out is not None:
            from deploykit.core.atomic import check_output_file

            check_output_file(out)
    if github_summary and not os.environ.get("GITHUB_STEP_SUMMARY"):
        raise UsageError("--github-summary: $GITHUB_STEP_SUMMARY is not set (outside GitHub Actions use --markdown)")
    path = history or default_path()
    with Store(path, create=False) as store:
        rows = store.rows()
    series = select(rows, model=model, target=target, precision=precision, batch=batch, resolution=resolution,
                    machine=machine, normalize=normalize, last=last)
    err = stderr_console()
    if steps is None:
        from deploykit.core.lazy import install_hint, is_installed

        steps = is_installed("ruptures")
        if not steps:
            from rich.markup import escape

            err.print(f"[yellow]note:[/] no step detection: ruptures is not installed "
                      f"({escape(install_hint('ruptures'))})")
    if steps:
        find_steps(series, penalty=penalty, alpha=alpha, min_change=min_frac)
    if html_out is not None:
        from deploykit.core.atomic import write_text

        write_text(html_out, html_page(series, source=str(path), detected=steps))
        err.print(f"[dim]html: {html_out}[/]")
    md = markdown(series, detected=steps)
    if md_out is not None:
        if str(md_out) == "-":
            click.echo(md, nl=False)
        else:
            from deploykit.core.atomic import write_text

            write_text(md_out, md)
    if github_summary:
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as f:
            f.write(md)
    if as_json:
        print_json([{"key": s.spec_key, "machine": s.machine, "normalized": s.normalized,
                     "points": [{"commit": r.commit_sha, "created": r.created, "p50": r.p50, "ci": [r.ci_lo, r.ci_hi],
                                 "n": r.n, "items_per_s": r.items_per_s, "rel_cost": r.rel_cost,
                                 "report": r.report_path} for r in s.rows],
                     "steps": [{"index": st.index, "from": s.rows[st.index - 1].commit_sha,
                                "to": s.rows[st.index].commit_sha, "change": st.change, "ci": list(st.ci),
                                "p_value": st.p_value} for st in s.steps]} for s in series])
    elif str(md_out) != "-":
        from deploykit.cli.tables import Col, print_fitted

        out = stdout_console()
        unit = "rel. cost" if normalize else "p50 ms"
        cols = [Col("model", "model", priority=1), Col("target", "target", priority=2),
                Col("precision", "precision", priority=3), Col("input", "input", priority=7),
                Col("points", "points", right=True, priority=5), Col("commits", "commits", right=True, priority=9),
                Col("last", f"last {unit}", right=True, priority=4), Col("ci", "95% CI", right=True, priority=8),
                Col("change", "vs first", right=True, priority=6), Col("last_commit", "last commit", priority=10),
                Col("since", "since", priority=12), Col("machine", "machine", priority=11),
                Col("steps", "steps", priority=4.5)]
        print_fitted(out, cols, series_rows(series), wide=wide, title=f"deploykit history ({path})",
                     caption="a series = one run spec on one machine class (--normalize: across machines); steps: "
                             "change (95% CI) and the commit range it happened in" if series else
                             "no runs match")
        srows = step_rows(series)
        if srows:
            cols = [Col("series", "series", priority=1), Col("kind", "step", priority=2),
                    Col("from", "after", priority=3), Col("to", "first changed", priority=3),
                    Col("change", "change", right=True, priority=2), Col("ci", "95% CI", right=True, priority=4),
                    Col("p", "p", right=True, priority=5), Col("date", "date", priority=6),
                    Col("points", "points before|after", right=True, priority=7)]
            print_fitted(out, cols, srows, wide=wide, title="detected steps")
    if fail_on_step and any(s.steps and s.steps[-1].change > 0 for s in series):
        return EXIT_REGRESSION
    return 0


@command.command("import")
@click.argument("reports_dir", type=click.Path(path_type=Path))
@click.option("--commit", default=None,
              help="Commit the runs belong to [default: the commit each report recorded (deploykit's checkout)].")
@history_option()
def import_cmd(reports_dir, commit, history):
    """Append every report JSON under REPORTS_DIR (bench, sweep cells, gate) to the store; a report stored
    already (same content) is skipped."""
    from deploykit.cli.common import stderr_console
    from deploykit.history.records import import_folder
    from deploykit.history.store import Store, default_path

    path = history or default_path()
    with Store(path) as store:
        n, added, problems = import_folder(store, reports_dir, commit=commit)
        total = store.count()
    err = stderr_console()
    for f, why in problems:
        err.print(f"[yellow]skipped[/] {f}: {why}")
    click.echo(f"{n} report(s) read, {added} run(s) added, {total} in {path}")
