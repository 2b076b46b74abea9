"""deploykit peak: this machine's GEMM peak per precision, measured with the runtimes deploykit uses (cached)."""

from __future__ import annotations

import click

from deploykit.cli.common import models_dir_option, print_json, resolve_models_dir, stderr_console, stdout_console
from deploykit.cli.runtime_options import runtime_option, target_option


@click.command("peak")
@runtime_option("threads", help="Threads to measure with (intra-op threads, as in bench) [default: all usable cores].")
@target_option(multiple=True, default=(), show_default=False, metavar="TARGET",
               help="Runtimes to measure: ort, openvino; repeat or comma-separate [default: both, where installed].")
@click.option("--force", is_flag=True, help="Measure again even when this machine's peak is cached.")
@click.option("--quick", is_flag=True,
              help="Two small shapes, short timings: a smoke test, not a peak "
                   "(cached as quick; a full run replaces it).")
@models_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the result (the cache entry) as JSON.")
def command(threads, targets, force, quick, models_dir, as_json):
    """Measure this machine's GEMM peak per precision with ONNX Runtime and OpenVINO (cached).

    Kernels: ONNX Runtime fp32 MatMul and int8 MatMulInteger / QLinearMatMul, OpenVINO fp32, bf16 / fp16
    where the CPU has them, and int8; on GEMM shapes typical of ResNet and ViT layers plus a large square.

    Prints the best GFLOP/s per precision (int8: GOP/s) beside the theoretical peak (cores x clock x
    operations per cycle of the ISA). The result is cached per machine and thread count in
    <models-dir>/.cache/peak-<machine id>.json; every bench report then gives its achieved GFLOP/s as a share
    of it (report "efficiency"). A whole model can beat a single-shape GEMM: shares above 100% happen.
    """
    from deploykit.bench.peak import peak, peak_targets
    from deploykit.core.errors import UsageError
    from deploykit.runtimes.base import get_runtime

    can = peak_targets()  # the targets that declare GEMM kernels (the PEAK capability)
    wanted = tuple(dict.fromkeys(t.strip() for spec in targets for t in spec.split(",") if t.strip()))
    bad = [t for t in wanted if t not in can]
    if bad:
        raise UsageError(f"deploykit peak measures {' and '.join(can)}, not {bad[0]!r}")
    if wanted:
        for t in wanted:
            get_runtime(t).ensure_available()  # asked for by name: unavailable is an error (exit 3)
    else:
        wanted = tuple(t for t in can if get_runtime(t).availability().available)
        if not wanted:
            get_runtime(can[0]).ensure_available()
    err = stderr_console()
    cache_dir = resolve_models_dir(models_dir) / ".cache"
    entry, cached, path = peak(cache_dir, threads, wanted, force=force, quick=quick,
                               say=lambda s: err.print(f"[dim]{s}[/]"))
    err.print(f"[dim]{'cached result (--force measures again)' if cached else 'cached'}: {path}[/]")
    if as_json:
        print_json({"cache": str(path), "from_cache": cached, **entry})
        return
    _print(entry)


def _unit(precision: str) -> str:
    return "GOP/s" if precision == "int8" else "GFLOP/s"


def _print(entry: dict) -> None:
    from rich.markup import escape

    from deploykit.cli.tables import Col, print_fitted

    out = stdout_console()
    quick = " (--quick: not a real peak)" if entry.get("quick") else ""
    cols = [Col("precision", "precision", priority=1), Col("best", "best measured", right=True, priority=2),
            Col("kernel", "runtime / kernel", priority=4), Col("shape", "shape MxKxN", priority=6),
            Col("theo", "theoretical", right=True, priority=3), Col("share", "share", right=True, priority=5)]
    theo = entry.get("theoretical", {})
    rows = []
    for p in ("fp32", "bf16", "fp16", "int8"):
        b, th = entry["best"].get(p), theo.get(p)
        if b is None and th is None:
            continue
        rng = (f" ({b['range'][0]:.0f}-{b['range'][1]:.0f} over {b.get('rounds')} rounds)"
               if b and b.get("range") else "")
        rows.append({"precision": p, "best": f"{b['gflops']:.1f} {_unit(p)}{rng}" if b else "-",
                     "kernel": f"{b['target']} {b['kernel']}" if b else "not measured",
                     "shape": b["shape"] if b else "-",
                     "theo": f"{th['gflops']:.1f}" if th else "-",
                     "share": f"{b['gflops'] / th['gflops']:.0%}" if b and th else "-"})
    print_fitted(out, cols, rows, title=f"GEMM peak at {entry['threads']} threads, measured "
                                        f"{entry['measured_at'][:16]}{quick}",
                 caption="share = best measured / theoretical", hidden_note="--json shows them")
    # per kernel and shape, one row each (a column per shape would not fit 80 columns with more than three)
    dcols = [Col("kernel", "runtime / kernel", priority=1), Col("ran", "ran", priority=3),
             Col("shape", "shape MxKxN", priority=2), Col("gflops", "GFLOP/s (int8: GOP/s)", right=True, priority=1)]
    drows = []
    for k in entry["kernels"]:
        name = f"{k['target']} {k['kernel']}"
        if k.get("skipped"):
            drows.append({"kernel": name, "ran": "skipped", "shape": "-", "gflops": "-"})
            continue
        for r in k["shapes"]:
            drows.append({"kernel": name, "ran": k["precision"], "shape": r["shape"], "gflops": f"{r['gflops']:.1f}"})
            name = ""  # the kernel named once, on its first shape
    print_fitted(out, dcols, drows, title="per kernel and shape", hidden_note="--json shows them")
    for k in entry["kernels"]:
        if k.get("skipped") or k.get("note"):
            out.print(f"{escape(k['target'] + ' ' + k['kernel'])}: {escape(k.get('skipped') or k['note'])}")
    for p, th in theo.items():
        if th:
            out.print(f"theoretical {p}: {th['cores']} cores x {th['clock_mhz']:g} MHz x {th['ops_per_cycle']:g} "
                      f"ops/cycle = {th['gflops']:.1f} {_unit(p)} ({escape(th['basis'])})")
    clk = next((th["clock_source"] for th in theo.values() if th), None)
    if clk:
        out.print(f"clock: {escape(clk)}")
    out.print(f"timing: {escape(entry['timing']['method'])}")
    out.print(escape(entry["note"]))
    for w in entry.get("warnings", []):
        out.print(f"[yellow]note:[/] {escape(w)}")
