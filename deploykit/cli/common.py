"""Options and output helpers shared by commands."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from deploykit.core.config import default_models_dir, default_reports_dir

POSITIVE = click.IntRange(min=1)


def models_dir_option(f):
    return click.option("--models-dir", type=click.Path(path_type=Path), default=None,
                        help="Artifact store [default: $DEPLOYKIT_MODELS or ./models].")(f)


def reports_dir_option(f):
    return click.option("--report-dir", type=click.Path(path_type=Path), default=None,
                        help="Where reports go [default: $DEPLOYKIT_REPORTS or ./reports].")(f)


def resolve_models_dir(value: Path | None) -> Path:
    return value or default_models_dir()


def resolve_reports_dir(value: Path | None) -> Path:
    return value or default_reports_dir()


def model_options(values: tuple[str, ...], *, parc_impl: str | None = None,
                  model: str | None = None) -> tuple[tuple[str, str], ...]:
    """``--model-opt key=value`` pairs, plus ``--parc-impl X`` as ``parc_impl=X``. With ``model`` (bench's
    several models) ``--parc-impl`` goes only to models that have the option; without, always (export)."""
    out = []
    for v in values:
        key, sep, val = v.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected key=value, got {v!r}", param_hint="--model-opt")
        out.append((key.strip().replace("-", "_"), val.strip()))
    if parc_impl is not None and (model is None or _has_option(model, "parc_impl")):
        out = [(k, v) for k, v in out if k != "parc_impl"] + [("parc_impl", parc_impl)]
    return tuple(out)


PARC_IMPLS = ("conv", "fft", "matmul")


def parc_impl_option(f):
    return click.option("--parc-impl", type=click.Choice(PARC_IMPLS), default=None,
                        help="ParC implementation for ParC models (the same as --model-opt parc_impl=...).")(f)


def _has_option(model: str, option: str) -> bool:
    from deploykit.models.registry import MODELS

    return model in MODELS and option in dict(MODELS.get(model).options)


def check_parc_impl(models, parc_impl: str | None) -> None:
    """--parc-impl with no ParC model among ``models`` is a usage error (it would silently do nothing)."""
    if parc_impl is not None and not any(_has_option(m, "parc_impl") for m in models):
        raise click.BadParameter(f"none of {', '.join(models)} has a ParC implementation to choose "
                                 "('deploykit models --family parc' lists the ParC models)", param_hint="--parc-impl")


def stderr_console():
    from rich.console import Console

    console = Console(stderr=True, highlight=False)
    if not console.is_terminal:  # logs: one message per line, never wrapped at 80 columns
        console = Console(stderr=True, highlight=False, width=max(console.width, 200), soft_wrap=True)
    return console


def stdout_console():
    from rich.console import Console

    console = Console(highlight=False)
    if not console.is_terminal:  # piped/CI logs: do not squeeze tables into 80 columns
        console = Console(highlight=False, width=max(console.width, 200))
    return console


def print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")
