"""deploykit train: a registry model trained on a labelled folder, for accuracy measured offline."""

from __future__ import annotations

from pathlib import Path

import click

from deploykit.cli.common import (POSITIVE, model_opt_option, model_option_flags, model_options, pop_model_flags,
                                  print_json, seed_option, stderr_console, stages)


@click.command("train")
@click.argument("model")
@click.option("--data", type=click.Path(path_type=Path), required=True, metavar="DIR",
              help="A folder with train/<class>/ and val/<class>/ images ('deploykit data digits -o DIR').")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Checkpoint to write [default: weights/<model>-<data folder>-r<resolution>.pt].")
@click.option("--resolution", type=click.IntRange(min=8, max=1024), default=32, show_default=True,
              help="Input side length the model trains (and is later exported) at.")
@click.option("--epochs", type=POSITIVE, default=10, show_default=True, help="Passes over the train split.")
@click.option("--batch-size", type=POSITIVE, default=64, show_default=True, help="Images per step.")
@click.option("--lr", type=click.FloatRange(min=0, max=10, min_open=True), default=2e-3, show_default=True,
              help="Peak learning rate (AdamW, one-cycle schedule).")
@click.option("--threads", type=click.IntRange(min=1, max=1024), default=None,
              help="Torch threads [default: torch's].")
@click.option("--no-augment", is_flag=True, help="No random shifts / scales.")
@seed_option(help="Seed of the initialisation, the batch order and the augmentation.")
@model_opt_option()
@model_option_flags
@click.option("--json", "as_json", is_flag=True, help="Print the checkpoint's description as JSON.")
def command(model, data, output, resolution, epochs, batch_size, lr, threads, no_augment, seed, model_opts,
            as_json, **params):
    """Train MODEL (a registry name) as a classifier on DATA/train, evaluate it on DATA/val (PyTorch fp32), and
    write a checkpoint that '--weights' loads (its classifier has DATA's number of classes):

    \b
    deploykit data digits -o data/digits --size 32
    deploykit train resnet18 --data data/digits --resolution 32 -o weights/resnet18-digits.pt
    deploykit bench resnet18 --weights weights/resnet18-digits.pt --resolution 32 --eval-data data/digits/val
    """
    from deploykit.train.classifier import TrainConfig, train

    flags = pop_model_flags(params)
    cfg = TrainConfig(model=model, data=str(data), resolution=resolution, epochs=epochs, batch_size=batch_size,
                      lr=lr, seed=seed, threads=threads, options=model_options(model_opts, **flags),
                      augment=not no_augment)
    out = output or Path("weights") / f"{model}-{Path(data).name or 'data'}-r{resolution}.pt"
    err = stderr_console()
    with stages(err, f"training {model}") as say:
        desc = train(cfg, out, say=say)
    if as_json:
        print_json({"path": str(out), **desc})
        return
    err.print(f"[dim]{model}: val top-1 {desc['val_top1_fp32_pytorch']:.2%} (PyTorch fp32, {desc['val_images']} "
              f"images) after {epochs} epochs in {desc['train_seconds']:.0f} s[/]")
    click.echo(str(out))
