"""The command-line surface as users see it: every command's help text and option set, compared with a committed
snapshot (tests/snapshots/cli.json). A change to a flag, a default, a choice or a help line fails here until the
snapshot is regenerated on purpose:

    DEPLOYKIT_UPDATE_SNAPSHOT=1 python -m pytest tests/unit/test_cli_snapshot.py

and the diff of tests/snapshots/cli.json is reviewed with the change.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

SNAPSHOT = Path(__file__).parents[1] / "snapshots" / "cli.json"


def _type_of(param: click.Parameter):
    t = param.type
    if isinstance(t, click.Choice):
        return {"choice": list(t.choices)}
    if isinstance(t, (click.IntRange, click.FloatRange)):
        return {"range": t.name, "min": t.min, "max": t.max, "min_open": t.min_open, "max_open": t.max_open}
    return t.name


def _default_of(param: click.Parameter):
    d = param.default
    if type(d).__name__ == "Sentinel":  # click 8.2+: "no default given"
        return None
    if callable(d):
        return "<dynamic>"
    if isinstance(d, (tuple, list)):
        return list(d)
    if isinstance(d, Path):
        return str(d)
    return d


def describe(cmd: click.Command, ctx: click.Context) -> dict:
    params = []
    for p in cmd.params:
        params.append({
            "name": p.name,
            "kind": "option" if isinstance(p, click.Option) else "argument",
            "opts": list(p.opts),
            "secondary_opts": list(p.secondary_opts),
            "type": _type_of(p),
            "default": _default_of(p),
            "required": p.required,
            "multiple": p.multiple,
            "nargs": p.nargs,
            "is_flag": bool(getattr(p, "is_flag", False)),
        })
    return {"help": cmd.get_help(ctx), "params": params}


def surface() -> dict:
    from deploykit.cli import cli

    # contexts made as the CLI makes them (the group's context_settings: -h/--help), at a fixed width
    root = cli.make_context("deploykit", [], resilient_parsing=True, terminal_width=100)
    out = {"deploykit": describe(cli, root)}
    for name, cmd, ctx in walk(cli, root):
        out[name] = describe(cmd, ctx)
    return out


def walk(group: click.Group, parent: click.Context, prefix: str = ""):
    """(name, command, context) of every command below ``group``, sub-commands of groups included."""
    for name in sorted(group.commands):
        cmd = group.commands[name]
        ctx = cmd.make_context(name, [], parent=parent, resilient_parsing=True, terminal_width=100)
        yield prefix + name, cmd, ctx
        if isinstance(cmd, click.Group):
            yield from walk(cmd, ctx, prefix + name + " ")


def test_cli_surface_matches_the_snapshot():
    now = surface()
    if os.environ.get("DEPLOYKIT_UPDATE_SNAPSHOT"):
        SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
        SNAPSHOT.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
    then = json.loads(SNAPSHOT.read_text())
    assert sorted(now) == sorted(then), "commands added or removed"
    for name in sorted(then):
        assert now[name]["params"] == then[name]["params"], f"options of {name!r} changed"
        assert now[name]["help"] == then[name]["help"], f"help text of {name!r} changed"
