"""The CLI reference (docs/cli.md), generated from the Click commands themselves.

    python -m deploykit.cli.docgen                         print the reference
    python -m deploykit.cli.docgen --write docs/cli.md     (re)write it (atomically)
    python -m deploykit.cli.docgen --check docs/cli.md     exit 1 when the file differs from the CLI

Only Click's public objects are read (``cmd.help``, ``cmd.params``, ``p.opts``, ``p.secondary_opts``,
``p.type``, ``p.default``, ``p.help``, ``cmd.collect_usage_pieces``), and the output does not depend on the
terminal width or the environment: a callable default is shown as its ``show_default`` text or ``dynamic``.
tests/unit/test_docs.py fails when docs/cli.md no longer matches.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

import click

WRITE_COMMAND = "python -m deploykit.cli.docgen --write docs/cli.md"

HEADER = f"""\
<!-- Generated from the CLI by `{WRITE_COMMAND}`. Do not edit by hand:
     tests/unit/test_docs.py fails when this file and the CLI disagree. -->

# CLI reference

Every command takes `-h/--help`; `deploykit --debug CMD ...` (or `DEPLOYKIT_DEBUG=1`) shows tracebacks.
Wherever a model name is accepted, a path to your own `.onnx` file works too. Exit codes are listed in
the [README](../README.md#exit-codes).
"""


# ---------------------------------------------------------------------------------------------- text helpers

def _cell(text: str) -> str:
    """One Markdown table cell: a single line, ``|`` escaped, ``<`` not read as the start of an HTML tag."""
    text = " ".join(str(text).split())
    return text.replace("|", "\\|").replace("<", "&lt;")


def _code_cell(text: str) -> str:
    """A code span inside a table cell (``|`` must still be escaped there)."""
    text = " ".join(str(text).split()).replace("|", "\\|")
    fence = "``" if "`" in text else "`"
    return f"{fence}{text}{fence}"


def _prose(text: str) -> str:
    return text.replace("<", "&lt;")


def _help_markdown(help_text: str | None) -> str:
    """A command's help text as Markdown: paragraphs joined into lines, ``\\b`` paragraphs kept verbatim."""
    if not help_text:
        return ""
    text = inspect.cleandoc(help_text).split("\f", 1)[0].strip()
    blocks = []
    for para in text.split("\n\n"):
        para = para.strip("\n")
        if not para.strip():
            continue
        if para.startswith("\b"):
            body = para[1:].strip("\n")
            blocks.append("```\n" + "\n".join(line.rstrip() for line in body.splitlines()) + "\n```")
        else:
            blocks.append(_prose(" ".join(para.split())))
    return "\n\n".join(blocks)


# ----------------------------------------------------------------------------------------------- parameters

def _is_unset(value) -> bool:
    # click >= 8.3 marks "no default given" with a sentinel object instead of None
    return value is None or type(value).__name__ == "Sentinel"


def _range_text(t) -> str:
    lo, hi = t.min, t.max
    lo_op = "<" if t.min_open else "<="
    hi_op = "<" if t.max_open else "<="
    if lo is not None and hi is not None:
        return f"{lo} {lo_op} x {hi_op} {hi}"
    if lo is not None:
        return f"{'>' if t.min_open else '>='} {lo}"
    if hi is not None:
        return f"{hi_op} {hi}"
    return ""


def _type_text(p: click.Parameter) -> str:
    t = p.type
    if isinstance(p, click.Option) and p.is_flag:
        text = "flag"
    elif isinstance(t, click.Choice):
        text = _code_cell("|".join(str(c) for c in t.choices))
    elif isinstance(p, click.Option) and p.metavar:
        text = _code_cell(p.metavar)
    elif isinstance(t, (click.IntRange, click.FloatRange)):
        base = "integer" if isinstance(t, click.IntRange) else "float"
        rng = _range_text(t)
        text = f"{base}, {_cell(rng)}" if rng else base
    elif isinstance(t, click.Path):
        text = "path"
    else:
        text = _cell(t.name)
    if p.multiple:
        text += ", repeatable"
    if isinstance(p, click.Argument) and p.nargs == -1:
        text += ", one or more" if p.required else ", any number"
    return text


def _default_text(p: click.Parameter) -> str:
    if p.required:
        return "required"
    d = p.default
    show = getattr(p, "show_default", None)
    if isinstance(show, str):  # click: a string replaces the shown value
        return _cell(show)
    if callable(d):
        return "dynamic"
    if _is_unset(d):
        return ""
    if isinstance(p, click.Option) and p.is_flag:
        if p.secondary_opts:  # --x/--no-x
            return _code_cell(p.opts[-1] if d else p.secondary_opts[-1])
        return "on" if d else ""
    if isinstance(d, (tuple, list)):
        return _code_cell(",".join(str(v) for v in d)) if d else ""
    if isinstance(d, Path):
        d = d.as_posix()
    return _code_cell(d)


def _name_text(p: click.Parameter) -> str:
    if isinstance(p, click.Argument):
        name = p.human_readable_name.upper()
        if p.nargs == -1:
            name += "..."
        return _code_cell(name if p.required else f"[{name}]")
    flags = ", ".join(_code_cell(o) for o in p.opts)
    if p.secondary_opts:
        flags += " / " + ", ".join(_code_cell(o) for o in p.secondary_opts)
    return flags


def _help_text(p: click.Parameter) -> str:
    if isinstance(p, click.Argument):
        return "argument"
    return _cell(p.help or "")


def _params_table(cmd: click.Command) -> str:
    params = [p for p in cmd.params if not getattr(p, "hidden", False)]
    if not params:
        return ""
    rows = ["| parameter | type | default | description |", "|---|---|---|---|"]
    for p in params:
        rows.append(f"| {_name_text(p)} | {_type_text(p)} | {_default_text(p)} | {_help_text(p)} |")
    return "\n".join(rows)


# ------------------------------------------------------------------------------------------------- commands

def _contexts(group: click.Group, ctx: click.Context):
    """(command, context) for ``group`` and, depth first, every command below it, sorted by name."""
    yield group, ctx
    for name in group.list_commands(ctx):
        sub = group.get_command(ctx, name)
        if sub is None or getattr(sub, "hidden", False):
            continue
        sub_ctx = click.Context(sub, info_name=name, parent=ctx, terminal_width=100, max_content_width=100)
        if isinstance(sub, click.Group):
            yield from _contexts(sub, sub_ctx)
        else:
            yield sub, sub_ctx


def _anchor(title: str) -> str:
    """GitHub's heading anchor for a plain heading of words, spaces and hyphens."""
    return "-".join(title.lower().split())


def _section(cmd: click.Command, ctx: click.Context) -> str:
    usage = " ".join([ctx.command_path, *cmd.collect_usage_pieces(ctx)])
    parts = [f"## {ctx.command_path}", f"```\n{usage}\n```"]
    description = _help_markdown(cmd.help)
    parts.append(description if description else "*(no description)*")
    if isinstance(cmd, click.Group):
        subs = [n for n in cmd.list_commands(ctx) if not getattr(cmd.get_command(ctx, n), "hidden", False)]
        if subs:
            parts.append("Commands: " + ", ".join(
                f"[`{n}`](#{_anchor(ctx.command_path + ' ' + n)})" for n in subs) + ".")
    table = _params_table(cmd)
    if table:
        parts.append(table)
    return "\n\n".join(parts)


def render_cli_reference(group: click.Group | None = None) -> str:
    """The Markdown reference of every command of ``group`` (default: ``deploykit.cli.cli``)."""
    if group is None:
        from deploykit.cli import cli as group
    # the group's own context settings (-h/--help): click caches each command's help option on first use, so a
    # context without them would change what later help output in the same process shows
    settings = {**group.context_settings, "terminal_width": 100, "max_content_width": 100}
    root = click.Context(group, info_name="deploykit", **settings)
    entries = list(_contexts(group, root))
    index = ["| command | what it does |", "|---|---|"]
    for cmd, ctx in entries[1:]:
        summary = cmd.get_short_help_str(limit=200) if cmd.help or cmd.short_help else ""
        index.append(f"| [`{ctx.command_path}`](#{_anchor(ctx.command_path)}) | {_cell(summary)} |")
    sections = [_section(cmd, ctx) for cmd, ctx in entries]
    return HEADER + "\n" + "\n".join(index) + "\n\n" + "\n\n".join(sections) + "\n"


# ----------------------------------------------------------------------------------------------------- main

def _write(path: Path, text: str) -> None:
    import os

    from deploykit.core.atomic import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploykit.cli.docgen",
                                     description="Render deploykit's CLI reference as Markdown.")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", metavar="PATH", type=Path, help="write the reference to PATH (atomically)")
    group.add_argument("--check", metavar="PATH", type=Path,
                       help="exit 1 when PATH differs from the reference the CLI renders now")
    args = parser.parse_args(argv)
    text = render_cli_reference()
    if args.write is not None:
        _write(args.write, text)
        print(f"wrote {args.write}", file=sys.stderr)
    elif args.check is not None:
        try:
            current = args.check.read_text(encoding="utf-8")
        except OSError as exc:
            print(f"error: cannot read {args.check}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        if current != text:
            print(f"error: {args.check} is out of date; run: {WRITE_COMMAND}", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
