"""The documentation stays true: the generated CLI reference matches the CLI, links resolve, the README names
the command CI runs, and the README stays a front page (a size limit) without history notes."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from deploykit.cli.docgen import WRITE_COMMAND, main, render_cli_reference

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = REPO / "docs"
CLI_MD = DOCS / "cli.md"
README_MAX_BYTES = 12 * 1024  # a front page; the details live in docs/

LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def markdown_files() -> list[Path]:
    """The README, docs/, and the README of every folder (models/, reports/, reports/baselines/, tests/, docker/)."""
    folders = sorted(p for p in REPO.glob("*/**/README.md") if ".venv" not in p.parts and "node_modules" not in p.parts)
    return [README, *sorted(DOCS.glob("*.md")), *folders]


def _prose_lines(text: str):
    """Lines outside fenced code blocks, with inline code spans blanked out."""
    in_fence = False
    for line in text.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            yield re.sub(r"`+[^`]*`+", "``", line)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`([^`]*)`", r"\1", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    in_fence = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        m = None if in_fence else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            slug = _slug(m.group(1))
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def relative_links(path: Path) -> list[str]:
    links = []
    for line in _prose_lines(path.read_text(encoding="utf-8")):
        for target in LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:, ...
                continue
            links.append(target)
    return links


# ----------------------------------------------------------------------------------- the generated reference

def test_cli_reference_is_up_to_date():
    assert CLI_MD.is_file(), f"docs/cli.md is missing; run: {WRITE_COMMAND}"
    current = CLI_MD.read_text(encoding="utf-8")
    assert current == render_cli_reference(), f"docs/cli.md is out of date with the CLI; run: {WRITE_COMMAND}"


def test_cli_reference_covers_every_command_and_option():
    from deploykit.cli import cli

    text = render_cli_reference()
    root = click.Context(cli, info_name="deploykit")

    def walk(group, ctx):
        for name in group.list_commands(ctx):
            cmd = group.get_command(ctx, name)
            sub = click.Context(cmd, info_name=name, parent=ctx)
            yield cmd, sub
            if isinstance(cmd, click.Group):
                yield from walk(cmd, sub)

    commands = list(walk(cli, root))
    assert len(commands) >= 9
    for cmd, ctx in commands:
        assert f"\n## {ctx.command_path}\n" in text, f"no section for {ctx.command_path}"
        section = text.split(f"\n## {ctx.command_path}\n", 1)[1].split("\n## ", 1)[0]
        for p in cmd.params:
            if isinstance(p, click.Option):
                assert f"`{p.opts[-1]}`" in section, f"{ctx.command_path}: {p.opts[-1]} missing"


def test_render_is_deterministic_and_escapes_table_cells(monkeypatch):
    @click.group()
    def grp():
        """A group."""

    @grp.command("thing")
    @click.argument("files", nargs=-1, required=True)
    @click.option("--mode", type=click.Choice(["a", "b|c"]), default="a", show_default=True, help="x | y <z>")
    @click.option("--path", default=lambda: str(Path.cwd()), help="Callable default.")
    @click.option("--home", default=lambda: "/somewhere", show_default="$HOME", help="Described default.")
    @click.option("--n", type=click.IntRange(1, 9), default=3, help="Range.")
    @click.option("--on/--off", default=True, help="Switch.")
    def thing(files, mode, path, home, n, on):
        """Do a thing.

        \b
        keep   these
        lines  apart
        """

    monkeypatch.setenv("COLUMNS", "40")
    narrow = render_cli_reference(grp)
    monkeypatch.setenv("COLUMNS", "300")
    wide = render_cli_reference(grp)
    assert narrow == wide
    assert "x \\| y &lt;z>" in narrow
    assert "`a\\|b\\|c`" in narrow
    assert str(Path.cwd()) not in narrow and "| dynamic |" in narrow
    assert "| $HOME |" in narrow
    assert "1 <= x <= 9" in narrow.replace("&lt;", "<")
    assert "`--on`" in narrow and "`--off`" in narrow
    assert "```\nkeep   these\nlines  apart\n```" in narrow
    assert "```\ndeploykit thing [OPTIONS] FILES...\n```" in narrow
    for line in narrow.splitlines():
        if line.startswith("| `--mode`"):
            assert line.count(" | ") == 3, line  # four cells: escaped pipes do not split the row


def test_docgen_write_and_check(tmp_path, capsys):
    out = tmp_path / "sub" / "cli.md"
    assert main(["--write", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == render_cli_reference()
    assert main(["--check", str(out)]) == 0
    out.write_text("stale\n", encoding="utf-8")
    assert main(["--check", str(out)]) == 1
    assert WRITE_COMMAND in capsys.readouterr().err
    assert not [p for p in out.parent.iterdir() if p.name != "cli.md"], "temporary files left behind"


# ------------------------------------------------------------------------------------------------- links

@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(path):
    broken = []
    for target in relative_links(path):
        file_part, _, fragment = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{target} (no such file)")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            broken.append(f"{target} (no heading #{fragment} in {dest.relative_to(REPO)})")
    assert not broken, f"{path.relative_to(REPO)}: broken links: {broken}"


def test_link_checker_sees_broken_links(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Top\n[ok](#top) [bad](missing.md) `[code](nope.md)`\n```\n[fenced](nope.md)\n```\n"
                    "[web](https://example.com)\n", encoding="utf-8")
    assert relative_links(page) == ["#top", "missing.md"]
    assert anchors(page) == {"top"}


def test_every_docs_page_is_linked_from_the_index():
    index = DOCS / "index.md"
    linked = {Path(t.partition("#")[0]).name for t in relative_links(index)}
    missing = [p.name for p in DOCS.glob("*.md") if p.name != "index.md" and p.name not in linked]
    assert not missing, f"docs/index.md does not link {missing}"


# -------------------------------------------------------------------------------------------- the README

def test_readme_names_the_test_command_ci_runs():
    readme = README.read_text(encoding="utf-8")
    assert re.search(r"^make test\b.*pytest", readme, re.M), "README must show `make test` and the pytest it runs"
    assert "`make test` is what CI runs" in readme
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    ci_commands = [line.strip() for line in ci.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert "make test" in ci_commands, ".ci/run no longer runs `make test`; fix the README or .ci/run"
    steps = [c for c in ci_commands if c.startswith((".ci/", "make "))]
    missing = [c for c in steps if c not in readme]
    assert not missing, f"the README does not name every step of .ci/run: {missing}"
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^test:", makefile, re.M), "the Makefile has no `test` target"


def test_make_test_runs_the_whole_suite_in_parallel_and_test_fast_skips_the_slow_tests():
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    variables = dict(re.findall(r"^(\w+)\s*:?=\s*(.*)$", makefile, re.M))

    def recipe(target):
        m = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", makefile, re.M)
        assert m, f"the Makefile has no `{target}` target"
        return [re.sub(r"\$\((\w+)\)", lambda v: variables.get(v.group(1), v.group(0)), ln.strip())
                for ln in m.group(1).splitlines()]

    full, fast = recipe("test"), recipe("test-fast")
    # make test: every test runs -- the parallel part leaves out only what the serial part runs
    assert [ln for ln in full if "-n " in ln and '-m "not serial"' in ln], full
    assert [ln for ln in full if "-n " not in ln and '-m "serial"' in ln], full
    assert not [ln for ln in full if "slow" in ln], full
    assert [ln for ln in fast if "-n " in ln and "not slow" in ln], fast


def test_readme_stays_a_front_page():
    size = README.stat().st_size
    assert size <= README_MAX_BYTES, (f"README.md is {size} bytes (limit {README_MAX_BYTES}); move details to "
                                      "docs/ instead of growing the front page")
    readme = README.read_text(encoding="utf-8")
    assert "docs/cli.md" in readme and "docs/index.md" in readme


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_history_notes(path):
    hits = re.findall(r"\(?\bissues?\s*#?\d+\)?", path.read_text(encoding="utf-8"), re.I)
    assert not hits, f"{path.relative_to(REPO)} speaks of issue numbers: {hits}; describe the project as it is"
