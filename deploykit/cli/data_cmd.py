"""deploykit data: built-in image sets written as folders, read like any user's data (nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

import click

from deploykit.cli.common import POSITIVE, print_json, seed_option, stderr_console


@click.group("data")
def command() -> None:
    """Built-in image sets as folders: labelled handwritten digits (an ImageFolder tree with a fixed train/val
    split, for --eval-data and --calib-data) and natural photos (calibration inputs). Their sources and licences
    are written beside them (dataset.json)."""


@command.command("digits")
@click.option("-o", "--out", type=click.Path(path_type=Path), default=Path("data/digits"), show_default=True,
              help="Folder to write: OUT/train/<class>/*.png, OUT/val/<class>/*.png, OUT/dataset.json.")
@click.option("--size", type=click.IntRange(min=8, max=1024), default=32, show_default=True,
              help="Side length in px (the 8x8 originals upscaled bilinearly, 3 channels).")
@click.option("--val-fraction", type=click.FloatRange(min=0, max=1, min_open=True, max_open=True), default=0.2,
              show_default=True, help="Share of the 1,797 images held out in val/ (never used for training or "
                                      "calibration).")
@seed_option(help="Seed of the train/val split.")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the set's description (dataset.json) as JSON.")
def digits(out, size, val_fraction, seed, force, as_json):
    """scikit-learn's 1,797 labelled handwritten digits (10 classes), upscaled, split into train/ and val/."""
    from deploykit.datasets.builtin import write_digits

    desc = write_digits(out, size=size, val_fraction=val_fraction, seed=seed, force=force)
    _done(out, desc, as_json, f"{desc['counts']['train']} train + {desc['counts']['val']} val images, 10 classes, "
                              f"{size} px")


@command.command("photos")
@click.option("-o", "--out", type=click.Path(path_type=Path), default=Path("data/photos"), show_default=True,
              help="Folder to write: OUT/photo-*.png and OUT/dataset.json.")
@click.option("--count", type=POSITIVE, default=256, show_default=True, help="Crops to write.")
@click.option("--size", type=click.IntRange(min=8, max=4096), default=224, show_default=True,
              help="Side length in px.")
@seed_option(help="Seed of the crops (scale, aspect, position, flip).")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the set's description (dataset.json) as JSON.")
def photos(out, count, size, seed, force, as_json):
    """Deterministic crops of the natural photographs that ship with scikit-learn and matplotlib: calibration
    inputs with realistic activation ranges (--calib-data OUT)."""
    from deploykit.datasets.builtin import write_photos

    desc = write_photos(out, count=count, size=size, seed=seed, force=force)
    _done(out, desc, as_json, f"{count} crops of {len(desc['sources'])} photographs, {size} px")


def _done(out: Path, desc: dict, as_json: bool, what: str) -> None:
    if as_json:
        print_json(desc)
        return
    stderr_console().print(f"[dim]{desc['set']}: {what}[/]")
    click.echo(str(out))
