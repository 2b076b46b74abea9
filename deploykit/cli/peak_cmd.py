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
    from rich.table import Table

    out = stdout_console()
    quick = " [yellow](--quick: not a real peak)[/]" if entry.get("quick") else ""
    table = Table(title=f"GEMM peak at {entry['threads']} threads, measured {entry['measured_at'][:16]}{quick}")
    for col, just in (("precision", "left"), ("best measured", "right"), ("runtime / kernel", "left"),
                      ("shape MxKxN", "left"), ("theoretical", "right"), ("measured / theoretical", "right")):
        table.add_column(col, justify=just)
    theo = entry.get("theoretical", {})
    for p in ("fp32", "bf16", "fp16", "int8"):
        b, th = entry["best"].get(p), theo.get(p)
        if b is None and th is None:
            continue
        rng = (f" ({b['range'][0]:.0f}-{b['range'][1]:.0f} over {b.get('rounds')} rounds)"
               if b and b.get("range") else "")
        table.add_row(p, f"{b['gflops']:.1f} {_unit(p)}{rng}" if b else "-",
                      escape(f"{b['target']} {b['kernel']}") if b else "not measured",
                      b["shape"] if b else "-", f"{th['gflops']:.1f}" if th else "-",
                      f"{b['gflops'] / th['gflops']:.0%}" if b and th else "-")
    out.print(table)
    shapes = [s["shape"] for s in entry.get("shapes", [])]
    detail = Table(title="per kernel and shape (" + _unit("fp32") + "; int8 kernels " + _unit("int8") + ")")
    detail.add_column("runtime / kernel")
    detail.add_column("ran")
    for s in shapes:
        detail.add_column(s, justify="right")
    for k in entry["kernels"]:
        if k.get("skipped"):
            detail.add_row(escape(f"{k['target']} {k['kernel']}"), "skipped", *(["-"] * len(shapes)))
            continue
        by = {r["shape"]: r["gflops"] for r in k["shapes"]}
        detail.add_row(escape(f"{k['target']} {k['kernel']}"), k["precision"],
                       *[f"{by[s]:.1f}" if s in by else "-" for s in shapes])
    out.print(detail)
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
