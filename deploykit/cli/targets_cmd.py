"""deploykit targets: every known target, available or not, and why."""

from __future__ import annotations

import click

from deploykit.cli.common import print_json, stdout_console


@click.command("targets")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def command(as_json):
    """Show every inference target with its status here and, when unavailable, the reason."""
    from deploykit.runtimes.base import list_targets

    rows = [{"target": name, "available": av.available, "device": cls.device_kind, "description": cls.description,
             "precisions": list(cls.precisions), "modes": list(cls.modes),
             "detail": av.detail if av.available else av.reason} for name, cls, av in list_targets()]
    if as_json:
        print_json(rows)
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="deploykit targets")
    for col in ("target", "status", "device", "description", "precisions", "modes", "detail / reason"):
        table.add_column(col)
    for r in rows:
        status = "[green]available[/]" if r["available"] else "[red]unavailable[/]"
        table.add_row(r["target"], status, r["device"], escape(r["description"]), ",".join(r["precisions"]),
                      ",".join(r["modes"]), escape(r["detail"]))  # escape: "deploykit[trt]" is not markup
    stdout_console().print(table)
