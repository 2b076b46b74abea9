"""Command-line interface. The only package that imports click; commands parse, call the library, render.

Error boundary: a DeployKitError (user error) prints one line ``error: ...`` and exits with its code;
click usage errors print one line and exit 2; Ctrl-C exits 130; anything else is a bug and gets a traceback
with exit code 1. ``--debug`` (or DEPLOYKIT_DEBUG=1) shows tracebacks for user errors too. SIGTERM (CI runners,
``timeout``) is handled like Ctrl-C -- the same clean-up -- and exits 143.
"""

from __future__ import annotations

import os
import signal
import sys

import click

from deploykit import __version__
from deploykit.core.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USAGE, DeployKitError, Terminated


def _quiet_known_noise() -> None:
    """Library chatter that is no news to a user: torch's cpp_extension (imported by torch.compile's inductor)
    warns "No CUDA runtime is found" on every CPU-only machine that has a CUDA toolkit folder."""
    import logging

    logger = logging.getLogger("torch.utils.cpp_extension")
    if _no_cuda_runtime_note not in logger.filters:
        logger.addFilter(_no_cuda_runtime_note)


def _no_cuda_runtime_note(record) -> bool:
    return "No CUDA runtime is found" not in record.getMessage()


def _err(msg: str) -> None:
    click.echo(f"error: {msg}", err=True)


class DeployKitGroup(click.Group):
    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        debug = bool(os.environ.get("DEPLOYKIT_DEBUG")) or "--debug" in (sys.argv[1:] if args is None else args)
        _quiet_known_noise()
        try:
            rv = super().main(args=args, prog_name=prog_name or "deploykit", complete_var=complete_var,
                              standalone_mode=False, **extra)
        except DeployKitError as exc:
            if debug:
                import traceback

                traceback.print_exc()
            _err(exc.one_line())
            sys.exit(exc.exit_code)
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.ctx.get_help() if exc.ctx else str(exc), err=True)
            sys.exit(EXIT_USAGE)
        except click.ClickException as exc:
            cmd = exc.ctx.command_path if getattr(exc, "ctx", None) else "deploykit"
            hint = f" (see '{cmd} --help')" if isinstance(exc, click.UsageError) else ""
            _err(" ".join(exc.format_message().split()) + hint)
            sys.exit(exc.exit_code)
        except (KeyboardInterrupt, click.exceptions.Abort) as exc:
            if isinstance(exc, Terminated) or isinstance(exc.__cause__, Terminated):  # click wraps it in Abort
                _err("terminated (SIGTERM); nothing half-written was left behind")
                sys.exit(EXIT_TERMINATED)
            _err("interrupted; nothing half-written was left behind")
            sys.exit(EXIT_INTERRUPTED)
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=DeployKitGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="deploykit")
@click.option("--debug", is_flag=True, help="Show tracebacks for user errors too.")
def cli(debug: bool) -> None:
    """Export CNN, ViT and ParC vision models to ONNX, quantize them, and measure them honestly on
    ONNX Runtime, OpenVINO and TensorRT.

    \b
    deploykit models                      what can be built
    deploykit export resnet50             PyTorch -> ONNX, verified against PyTorch
    deploykit bench resnet50 deit_small   latency / throughput / fidelity -> reports/
    deploykit targets                     which runtimes work here, and why not
    deploykit gate CAND --against BASE    CI latency regression gate (exit 4 on a regression)
    deploykit sweep --study FILE.toml     a matrix of cells -> one results table; compare them
    deploykit loadgen resnet50 ...        serving under load, peak QPS within a latency bound (LoadGen)
    """


# each command's line in 'deploykit --help': whole sentences that fit 80 columns (click would cut the docstring's
# first sentence mid-word at the terminal's width)
SHORT_HELP = {
    "baseline": "Store and update baselines for 'gate --baseline FILE'.",
    "bisect": "Find the commit that made a model slower (git bisect + gate).",
    "bench": "Measure models on targets: latency, throughput, fidelity.",
    "cache": "See and prune the artifact store (exports, int8, blobs).",
    "compare": "Compare reports, folders or results tables side by side.",
    "data": "Write built-in labelled images (digits, photos) as folders.",
    "explain": "Why one run is slower than another, layer by layer.",
    "export": "Export a model to ONNX, verified against PyTorch.",
    "fuse": "Fold BatchNorm into Conv / Gemm; other graph passes.",
    "gate": "Fail CI when a candidate got slower than a baseline.",
    "history": "Latency series across commits, their steps, the store.",
    "inspect": "Ops, parameters, MACs and shapes of an ONNX file.",
    "loadgen": "Serve a model under MLPerf LoadGen's load (QPS, p99).",
    "models": "List the models deploykit can build.",
    "peak": "Measure this machine's GEMM peak per precision.",
    "quantize": "Quantize a model to int8 (QDQ), with fidelity checks.",
    "report": "Render a sweep or bench reports as an HTML / Markdown page.",
    "run": "Measure the run described by a run spec file.",
    "sweep": "Run a matrix of models x targets x settings.",
    "targets": "Show every target, whether it works here, and why not.",
    "train": "Train a registry model on a labelled folder (CPU, seeded).",
    "tune": "Find the fastest variant that keeps its accuracy, proven A/B.",
}


def _register() -> None:
    from deploykit.cli import bench_cmd, export_cmd, fuse_cmd, inspect_cmd, models_cmd, quantize_cmd, targets_cmd

    for mod in (models_cmd, export_cmd, fuse_cmd, inspect_cmd, quantize_cmd, bench_cmd, targets_cmd):
        cli.add_command(mod.command)
    from deploykit.cli import peak_cmd  # the machine's GEMM peak (bench reports' efficiency)

    cli.add_command(peak_cmd.command)
    from deploykit.cli import baseline_cmd, gate_cmd  # latency gates

    for mod in (gate_cmd, baseline_cmd):
        cli.add_command(mod.command)
    from deploykit.cli import compare_cmd, sweep_cmd  # sweeps and comparisons

    for mod in (sweep_cmd, compare_cmd):
        cli.add_command(mod.command)
    from deploykit.cli import report_cmd  # results tables -> HTML / Markdown reports

    cli.add_command(report_cmd.command)
    from deploykit.cli import loadgen_cmd  # serving under load (MLPerf LoadGen)

    cli.add_command(loadgen_cmd.command)
    from deploykit.cli import run_cmd  # one run spec file (a sweep's / a Slurm node's child)

    cli.add_command(run_cmd.command)
    from deploykit.cli import explain_cmd  # two runs side by side per layer (why int8 is not faster)

    cli.add_command(explain_cmd.command)
    from deploykit.cli import bisect_cmd, history_cmd  # latency history across commits, bisecting a regression

    for mod in (history_cmd, bisect_cmd):
        cli.add_command(mod.command)
    from deploykit.cli import data_cmd, train_cmd  # built-in image sets as folders; training for accuracy

    cli.add_command(data_cmd.command)
    cli.add_command(train_cmd.command)
    from deploykit.cli import cache_cmd  # the artifact store: list and prune

    cli.add_command(cache_cmd.command)
    from deploykit.cli import tune_cmd  # the search for the fastest variant that keeps its accuracy

    cli.add_command(tune_cmd.command)
    for name, cmd in cli.commands.items():
        cmd.short_help = SHORT_HELP.get(name, cmd.short_help)


_register()


def _on_sigterm(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise Terminated()


def main() -> None:
    # Ctrl-C / kill -INT stops every command cleanly, also when started as a background job of a script (whose
    # shell ignores SIGINT for it, and Python keeps an inherited ignore): as the sweep's own handler does
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, _on_sigterm)
    cli.main()
