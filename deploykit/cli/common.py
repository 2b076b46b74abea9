"""Options and output helpers shared by commands."""

from __future__ import annotations

import json
import math
import sys
from contextlib import contextmanager
from pathlib import Path

import click

from deploykit.core.config import default_models_dir, default_reports_dir

POSITIVE = click.IntRange(min=1)


def _finite(value, param, ctx, ptype):
    if not math.isfinite(value):
        ptype.fail(f"{value!r} is not a finite number.", param, ctx)
    return value


class FiniteFloatRange(click.FloatRange):
    """``click.FloatRange`` that refuses nan and inf (NaN passes every range comparison; inf every lower bound).
    Every float option of deploykit's commands uses it (or ``FINITE_FLOAT``)."""

    def convert(self, value, param, ctx):
        return _finite(super().convert(value, param, ctx), param, ctx, self)


class _FiniteFloat(click.types.FloatParamType):
    def convert(self, value, param, ctx):
        return _finite(super().convert(value, param, ctx), param, ctx, self)


FINITE_FLOAT = _FiniteFloat()  # ``type=float`` without nan / inf


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


def model_options(values: tuple[str, ...], *, model: str | None = None, **flags) -> tuple[tuple[str, str], ...]:
    """``--model-opt key=value`` pairs, plus the declared model options' own flags (``flags``: name -> value, e.g.
    ``parc_impl="fft"`` from ``--parc-impl fft``). With ``model`` (a command over several models) a flag goes only
    to models that have the option; without, always (export of one model)."""
    out = []
    for v in values:
        key, sep, val = v.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected key=value, got {v!r}", param_hint="--model-opt")
        out.append((key.strip().replace("-", "_"), val.strip()))
    for name, value in flags.items():
        if value is not None and (model is None or _has_option(model, name)):
            out = [(k, v) for k, v in out if k != name] + [(name, value)]
    return tuple(out)


def model_option_flags(f):
    """A flag for each model option a family declares with one (``--parc-impl``): a convenient alias of
    ``--model-opt NAME=VALUE``, its choices and help from the declaration (``models.registry.ModelOption``)."""
    from deploykit.models.registry import model_options_declared

    for o in reversed([o for o in model_options_declared() if o.flag]):
        f = click.option(o.flag, o.name, type=click.Choice(list(o.choices)), default=None, help=o.help or None)(f)
    return f


def pop_model_flags(params: dict) -> dict:
    """The declared model options' flag values, taken out of a command's parameters (name -> value or None)."""
    from deploykit.models.registry import model_options_declared

    return {o.name: params.pop(o.name) for o in model_options_declared() if o.flag and o.name in params}


def check_model_flags(models, flags: dict) -> None:
    """A model option flag that none of ``models`` has is a usage error (it would silently do nothing)."""
    from deploykit.models.registry import MODEL_OPTIONS

    for name, value in flags.items():
        if value is not None and not any(_has_option(m, name) for m in models):
            o = MODEL_OPTIONS.get(name)
            what = f"a {o.label}" if o.label else f"the option {name}"
            hint = f" ('deploykit models --family {o.family}' lists them)" if o.family else ""
            raise click.BadParameter(f"none of {', '.join(models)} has {what} to choose{hint}", param_hint=o.flag)


# ---- model options: declared once here; each command places them and may word their help for its context

# Options several commands share, declared once; a command may give its own help text or default (gate's come
# from its baseline, so they default to None there).
def batch_option(help: str | None = None, **kw):
    return click.option("--batch", type=POSITIVE, **{"default": 1, "show_default": True, "help": help, **kw})


def resolution_option(help: str = "Input height = width [default: the model's].", **kw):
    return click.option("--resolution", type=POSITIVE, **{"default": None, "help": help, **kw})


def opset_option(help: str | None = "Opset when a registry model is exported.", **kw):
    return click.option("--opset", type=int, **{"default": 18, "show_default": True, "help": help, **kw})


def seed_option(help: str | None, **kw):
    return click.option("--seed", type=int, **{"default": 0, "show_default": True, "help": help, **kw})


def model_opt_option(help: str | None = "Model option (see 'deploykit models').", **kw):
    return click.option("--model-opt", "model_opts", multiple=True, metavar="KEY=VALUE", **{"help": help, **kw})


PRETRAINED_HELP = ("Load the model's published weights (timm:NAME, tv:NAME models) the way timm / torchvision do, "
                   "from their local cache only (torch hub, Hugging Face hub; nothing is downloaded). Excludes "
                   "--weights.")


def weights_options(help: str = "Checkpoint for a registry model."):
    """``--weights FILE`` and ``--pretrained`` (one or the other: ``check_weights``)."""

    def deco(f):
        f = click.option("--pretrained", is_flag=True, help=PRETRAINED_HELP)(f)
        return click.option("--weights", type=click.Path(path_type=Path), default=None, help=help)(f)

    return deco


def check_weights(weights, pretrained: bool) -> None:
    if weights is not None and pretrained:
        raise click.BadParameter("--pretrained and --weights exclude each other (published weights or your "
                                 "checkpoint)", param_hint="--weights")


def expand_models(refs) -> list[str]:
    """Model arguments with globs expanded against model names (``models.select.expand_model_refs``)."""
    from deploykit.models.select import expand_model_refs

    return expand_model_refs(refs)


def _has_option(model: str, option: str) -> bool:
    from deploykit.spec.run import model_option_applies

    return model_option_applies(model, option)


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


@contextmanager
def stages(err, first: str, *, prefix: str = ""):
    """The progress of one piece of work, as ``say(message)``: a spinner on a terminal (starting with ``first``);
    in a log (stderr is not a terminal) one line per stage the work reports, so a CI log shows where the time
    goes (a check that fails before the work starts stays the only line). Whatever the work itself prints to
    stdout goes to stderr meanwhile (``core.stdio.stdout_to_stderr``): stdout is for the command's result."""
    from rich.markup import escape

    from deploykit.core.stdio import stdout_to_stderr

    with stdout_to_stderr():
        if err.is_terminal:
            with err.status(escape(prefix + first)) as status:
                yield lambda msg: status.update(escape(prefix + msg))
            return
        last = [None]

        def say(msg: str) -> None:
            if msg != last[0]:
                last[0] = msg
                err.print(f"[dim]{escape(prefix + msg)}[/]")

        yield say


def print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def _split_csv(values) -> tuple[str, ...]:
    return tuple(v.strip() for spec in values for v in spec.split(",") if v.strip())


def calibration_options(f):
    """Options shared by ``quantize`` and ``bench --int8``: calibration data and the int8 recipe."""
    opts = [
        click.option("--calib-data", default=None, metavar="DIR|synthetic",
                     help="Calibration images (folder, searched recursively; preprocessed with the model's "
                          "resize/crop/mean/std), or 'synthetic' for a smoke test on noise."),
        click.option("--calib-size", type=POSITIVE, default=128, show_default=True,
                     help="Calibration images used (a seeded sample when the folder has more)."),
        click.option("--calib-method", type=click.Choice(["minmax", "entropy", "percentile"]), default="minmax",
                     show_default=True, help="How activation ranges are chosen from the calibration data."),
        click.option("--softmax", type=click.Choice(["float", "int8", "auto"]), default=None,
                     help="Attention softmax path; auto: both measured per layer on the target, the faster kept "
                          "(cached per machine) [default: int8 for ViTs (fixed [0,1] output scale), float for "
                          "--quantizer nncf]."),
        click.option("--profile", "qdq_profile", type=click.Choice(["cpu", "trt"]), default=None,
                     help="cpu: uint8 activations (ONNX Runtime/OpenVINO CPU); trt: symmetric int8, zero points 0 "
                          "(TensorRT explicit quantization) [default: with a target, its own (trt for trt, "
                          "ort-trt), else cpu]."),
        click.option("--exclude", multiple=True, metavar="OP|NODE",
                     help="Op types or node names (globs) to keep in float; repeat or comma-separate."),
        click.option("--reduce-range/--no-reduce-range", default=None,
                     help="7-bit weights [default: on for x86 CPUs without VNNI, as ONNX Runtime advises]."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


CALIB_KEYS = ("calib_data", "calib_size", "calib_method", "softmax", "qdq_profile", "exclude", "reduce_range")


def quantize_config(*, calib_data, calib_size, calib_method, softmax, qdq_profile, exclude, reduce_range, **extra):
    from deploykit.core.config import QuantizeConfig

    return QuantizeConfig(calib_data=calib_data, calib_size=calib_size, calib_method=calib_method, softmax=softmax,
                          profile=qdq_profile, exclude=_split_csv(exclude), reduce_range=reduce_range, **extra)


PREPROCESS_FLAGS = ("mean", "std", "crop_pct", "interpolation", "channel_order", "value_range")


def preprocess_options(f=None, *, crop: bool = True):
    """How images become the model's input, for a file whose own preprocessing is unknown or different (a user's
    ONNX file): calibration and --eval-data read images this way; the report says which preprocessing ran and
    where it came from (the manifest, the file's metadata, these flags, or ImageNet's default)."""

    def deco(fn):
        opts = [
            click.option("--mean", default=None, metavar="M[,M,M]",
                         help="Per-channel mean subtracted after scaling to --value-range [default: the model's / the "
                              "file's; else ImageNet's]."),
            click.option("--std", default=None, metavar="S[,S,S]", help="Per-channel std divided by."),
            *([click.option("--crop-pct", type=FiniteFloatRange(min=0, max=1, min_open=True), default=None,
                            help="Resize the shorter side to resolution / crop-pct, then center-crop.")]
              if crop else []),
            click.option("--interpolation", type=click.Choice(["bilinear", "bicubic", "nearest"]), default=None,
                         help="Resize filter."),
            click.option("--channel-order", type=click.Choice(["rgb", "bgr"]), default=None,
                         help="Order of the input channels."),
            click.option("--value-range", type=FiniteFloatRange(min=0, max=65535, min_open=True), default=None,
                         help="Pixels scaled to [0, value-range] before mean/std: 1 (most models) or 255."),
        ]
        for o in reversed(opts):
            fn = o(fn)
        return fn

    return deco(f) if f is not None else deco


def pop_preprocess(params: dict) -> dict:
    """The preprocessing flags given, taken out of a command's parameters (mean/std as floats)."""
    out = {}
    for k in PREPROCESS_FLAGS:
        v = params.pop(k, None)
        if v is None:
            continue
        if k in ("mean", "std"):
            try:
                v = tuple(float(x) for x in str(v).split(",") if x.strip())
            except ValueError:
                raise click.BadParameter(f"expected numbers separated by commas, got {v!r}",
                                         param_hint=f"--{k}") from None
        out[k] = v
    return out
