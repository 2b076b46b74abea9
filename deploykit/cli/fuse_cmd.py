"""deploykit fuse: fold BatchNormalization (and drop Identity nodes) in any ONNX file, verified numerically."""

from __future__ import annotations

from pathlib import Path

import click

from deploykit.cli.common import batch_option, print_json, resolution_option, stderr_console, stdout_console


@click.command("fuse")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Where to write the fused graph [default: FILE with .fused.onnx].")
@click.option("--pass", "pass_names", multiple=True, metavar="NAME",
              help="Passes to run, in order [default: identity, fold-bn].")
@batch_option(default=None, show_default=False, help="Batch for a dynamic batch axis during verification.")
@resolution_option(help="Size of dynamic spatial dims during verification.")
@click.option("--no-verify", is_flag=True, help="Skip the numeric check against the unfused graph.")
@click.option("--json", "as_json", is_flag=True, help="Print the node counts and verification as JSON.")
def command(file, output, pass_names, batch, resolution, no_verify, as_json):
    """Fold BatchNormalization into the preceding Conv / ConvTranspose / Gemm of FILE and remove Identity
    nodes, then check that the fused graph reproduces the original (ONNX Runtime, optimisations off, seeded
    input): max-abs error <= 1e-4 of the output range. Prints node counts by op type before and after.

    torch 2.14's exporter already folds BN in eval mode; files from other exporters, or from
    'deploykit export --no-fold --no-fuse', still carry it.
    """
    from deploykit.core.atomic import check_output_file
    from deploykit.core.errors import InputError
    from deploykit.onnxio.files import load_onnx_with_data, save_onnx
    from deploykit.passes.fuse import DEFAULT_PASSES, fuse_model

    proto, external = load_onnx_with_data(file)
    dest = output or file.with_name(file.name.removesuffix(".onnx") + ".fused.onnx")
    if dest.suffix != ".onnx":
        raise InputError(f"--output must end in .onnx, got {dest}")
    check_output_file(dest, "--output")
    result = fuse_model(proto, pass_names or DEFAULT_PASSES, verify=not no_verify, batch=batch, resolution=resolution)
    # weights kept in external files stay external (<output>.data beside it)
    written = save_onnx(result.model, dest, external=True if external else None)
    summary = {"input": str(file), "output": str(dest), "external_data": written, **result.summary()}
    if as_json:
        print_json(summary)
        return
    from rich.table import Table

    ops = sorted(set(result.before) | set(result.after), key=lambda k: (-result.before.get(k, 0), k))
    t = Table(title=f"{file.name}: nodes by op type before and after ({', '.join(summary['passes'])})")
    for col in ("op", "before", "after", "delta"):
        t.add_column(col, justify="left" if col == "op" else "right")
    for op in ops:
        b, a = result.before.get(op, 0), result.after.get(op, 0)
        t.add_row(op, str(b), str(a), f"{a - b:+d}" if a != b else "")
    t.add_row("[bold]total[/]", str(summary["nodes_before"]), str(summary["nodes_after"]),
              f"{summary['nodes_after'] - summary['nodes_before']:+d}")
    stdout_console().print(t)
    err = stderr_console()
    for step in result.steps:
        extra = ""
        if step["pass"] == "fold-bn":
            extra = f" ({len(step['kept'])} kept: {step['kept'][0]['reason']})" if step.get("kept") else ""
        err.print(f"{step['pass']}: {step['changed']} changed{extra}")
    v = result.verification
    if v is None:
        err.print("[yellow]verification skipped (--no-verify)[/]")
    elif v.get("skipped"):
        err.print(f"verification: {v['reason']}")
    else:
        run = v["runs"][0]
        err.print(f"verified against the unfused graph: max-abs {run['max_abs']:.2e} (rel {run['rel_err']:.1e} <= "
                  f"{v['tolerance']['rtol']:g}), cosine {run['cosine']:.8f}")
    click.echo(str(dest))
