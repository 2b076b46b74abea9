"""deploykit cache: see and prune the artifact store (in the manner of ``pip cache`` and ``huggingface-cli``)."""

from __future__ import annotations

import click

from deploykit.cli.common import models_dir_option, print_json, resolve_models_dir, stderr_console, stdout_console


def size_text(n: int) -> str:
    for unit, div in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n} B"


def _print(entries, title: str, wide: bool = False) -> None:
    from deploykit.cli.tables import Col, print_fitted

    cols = [Col("model", "model", priority=1), Col("variant", "variant", priority=2),
            Col("size", "size", right=True, priority=3), Col("files", "files", right=True, priority=5),
            Col("modified", "modified", priority=4), Col("manifest", "manifest", priority=6)]
    rows = [{"model": e.model, "variant": e.variant, "size": size_text(e.bytes), "files": str(len(e.files)),
             "modified": e.record()["modified"].replace("T", " ")[:16],
             "manifest": "-" if e.model == ".cache" else "yes" if e.managed else "no"}
            for e in entries]
    total = sum(e.bytes for e in entries)
    print_fitted(stdout_console(), cols, rows, wide=wide, title=title,
                 caption=f"{len(entries)} entries, {size_text(total)}", hidden_note="--json shows them")


@click.group("cache")
def command() -> None:
    """See and prune the artifact store: exported models, int8 builds, reference outputs and the runtimes'
    compiled blobs (<models-dir>/.cache)."""


@command.command("list")
@models_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON.")
def list_command(models_dir, as_json) -> None:
    """List each model's variants (an artifact with its manifest, external data and reference outputs) and the
    cache entries, with their size and when they were last written."""
    from deploykit.export.store import list_store

    mdir = resolve_models_dir(models_dir)
    entries = list_store(mdir)
    if as_json:
        print_json({"models_dir": str(mdir), "bytes": sum(e.bytes for e in entries),
                    "entries": [e.record() for e in entries]})
        return
    _print(entries, f"deploykit cache: {mdir}")


@command.command("prune")
@models_dir_option
@click.option("--older-than", metavar="AGE", default=None,
              help="Remove what was not written for AGE (30d, 12h, 90m; a bare number is days).")
@click.option("--keep", type=click.IntRange(min=0), default=None,
              help="Keep the N most recently written variants of each model; remove the rest.")
@click.option("--all", "everything", is_flag=True, help="Remove everything in the store.")
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print what was (or would be) removed as JSON.")
def prune_command(models_dir, older_than, keep, everything, dry_run, as_json) -> None:
    """Remove whole variants and cache entries: those older than --older-than, all but the --keep newest per
    model, or --all. Anything is re-exported / rebuilt when a later command needs it."""
    from deploykit.core.errors import UsageError
    from deploykit.export.store import list_store, parse_age, remove, select_prune

    if older_than is None and keep is None and not everything:
        raise UsageError("say what to prune: --older-than AGE, --keep N or --all (--dry-run lists it first)")
    mdir = resolve_models_dir(models_dir)
    entries = list_store(mdir)
    chosen = entries if everything else select_prune(
        entries, older_than_s=None if older_than is None else parse_age(older_than), keep=keep)
    size = sum(e.bytes for e in chosen)
    freed = 0 if dry_run else remove(chosen, mdir)
    if as_json:
        print_json({"models_dir": str(mdir), "dry_run": dry_run, "bytes": size, "freed": freed,
                    "entries": [e.record() for e in chosen]})
        return
    if chosen:
        _print(chosen, f"{'would remove' if dry_run else 'removed'} from {mdir}")
    err = stderr_console()
    left = sum(e.bytes for e in entries) - (0 if dry_run else freed)
    err.print(f"{'would free' if dry_run else 'freed'} {size_text(size if dry_run else freed)} "
              f"({len(chosen)} of {len(entries)} entries); the store {'holds' if dry_run else 'now holds'} "
              f"{size_text(left)}", markup=False, highlight=False)
