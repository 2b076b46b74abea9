"""deploykit bisect: the commit that made a model slower, found by git bisect with a latency gate at each step."""

from __future__ import annotations

from pathlib import Path

import click

from deploykit.cli.common import FiniteFloatRange


@click.command("bisect")
@click.argument("good")
@click.argument("bad")
@click.option("--model", "-m", "model", required=True,
              help="A tracked ONNX file (path inside the repository: the file as committed at each commit) or a "
                   "registry model (exported by each commit's deploykit code; the repository must be deploykit's).")
@click.option("-t", "--target", default=None, help="Target to measure on [default: the gate's, ort].")
@click.option("--precision", default=None, help="Precision the target runs.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Intra-op threads.")
@click.option("--tolerance", default="5%", show_default=True, metavar="PCT",
              help="Slowdown against GOOD that counts as a regression (the gate's --tolerance).")
@click.option("--min-blocks", type=click.IntRange(min=6), default=None, help="The gate's --min-blocks.")
@click.option("--max-blocks", type=click.IntRange(min=6), default=None, help="The gate's --max-blocks.")
@click.option("--block-time", type=FiniteFloatRange(min=0), default=None, help="The gate's --block-time.")
@click.option("--retry-blocks", type=click.IntRange(min=6), default=None,
              help="--max-blocks of the second measurement of an INCONCLUSIVE step [default: twice the first's].")
@click.option("--gate-arg", "gate_args", multiple=True, metavar="ARG",
              help="Another argument passed to each 'deploykit gate' as it is (repeat).")
@click.option("--repo", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="The git repository [default: the one the working directory is in].")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def command(good, bad, model, target, precision, threads, tolerance, min_blocks, max_blocks, block_time, retry_blocks,
            gate_args, repo, as_json):
    """Find the first commit between GOOD and BAD where MODEL got slower than at GOOD.

    Runs 'git bisect run' in a throwaway git worktree (your checkout is never touched; the worktree is removed
    afterwards). At each commit, 'deploykit gate' measures that commit's artifact interleaved with GOOD's:
    REGRESSION marks it bad, PASS / IMPROVEMENT good, INCONCLUSIVE is measured once more with more blocks and
    then skipped. Exit 0 when the first bad commit is named, 5 when skips leave several candidates.
    """
    from deploykit.cli.common import print_json, stderr_console, stdout_console
    from deploykit.core.errors import EXIT_INCONCLUSIVE
    from deploykit.history.bisect import bisect

    args: list[str] = []
    for flag, value in (("-t", target), ("--precision", precision), ("--threads", threads),
                        ("--tolerance", tolerance), ("--min-blocks", min_blocks), ("--max-blocks", max_blocks),
                        ("--block-time", block_time)):
        if value is not None:
            args += [flag, str(value)]
    err = stderr_console()
    result = bisect(good, bad, model=model, repo=repo, gate_args=[*args, *gate_args], retry_blocks=retry_blocks,
                    say=lambda s: err.print(f"[dim]{s}[/]"))
    if as_json:
        print_json(result.to_json())
    else:
        from deploykit.cli.tables import Col, print_fitted

        rows = [{"commit": s.commit[:10], "try": str(s.attempt), "verdict": s.verdict,
                 "change": "-" if s.change is None else f"{s.change:+.1%}",
                 "ci": "-" if not s.ci else f"{s.ci[0]:+.1%}..{s.ci[1]:+.1%}", "wall": f"{s.wall_s:.1f}"}
                for s in result.steps]
        cols = [Col("commit", "commit", priority=1), Col("try", "try", right=True, priority=5),
                Col("verdict", "gate", priority=2), Col("change", "change vs GOOD", right=True, priority=3),
                Col("ci", "CI", right=True, priority=4), Col("wall", "s", right=True, priority=6)]
        print_fitted(stdout_console(), cols, rows, title="deploykit bisect: gate at each step")
    if result.first_bad:
        err.print(f"[bold]first bad commit: {result.first_bad[:12]}[/] {result.subject or ''} "
                  f"({result.gate_runs} gate runs, {result.wall_s:.1f} s)")
        return 0
    err.print(f"[yellow]no single first bad commit: skipped (INCONCLUSIVE) steps leave {len(result.candidates)} "
              f"candidates: {', '.join(c[:10] for c in result.candidates)}[/] ({result.gate_runs} gate runs, "
              f"{result.wall_s:.1f} s)")
    return EXIT_INCONCLUSIVE
