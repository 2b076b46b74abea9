"""Command-line flags -> run specs: the one place where a measuring command's parsed parameters (models, targets,
the declared runtime options, model options and their flags, weights, opset, --int8 with its calibration options)
become ``RunSpec``s. Every measuring command (bench, loadgen) calls it; ``deploykit run`` reads specs from a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from deploykit.cli.common import (CALIB_KEYS, check_model_flags, check_weights, expand_models, model_options,
                                  pop_model_flags, pop_preprocess, quantize_config, resolve_models_dir)
from deploykit.cli.runtime_options import runtime_options


def split_targets(targets) -> list[str]:
    from deploykit.core.errors import UsageError

    items = (targets,) if isinstance(targets, str) else tuple(targets)
    out = [t.strip() for spec in items for t in spec.split(",") if t.strip()]
    if not out:
        raise UsageError(f"-t/--target {','.join(items)!r} names no target ('deploykit targets' lists them)")
    return list(dict.fromkeys(out))


def cache_dir(models: list[str], models_dir: Path | None, int8: bool) -> Path:
    """Where the runtimes' compiled blobs and the complexity counts go: the artifact store's .cache; for a run on
    plain ONNX files only (no export, no int8 build) with no store named or present here, the user's cache, so
    that 'deploykit bench x.onnx --no-save' leaves nothing in the working directory."""
    import os

    from deploykit.core.config import default_models_dir, user_cache_dir
    from deploykit.models.select import is_model_name

    if (models_dir is None and "DEPLOYKIT_MODELS" not in os.environ and models and not int8
            and not any(is_model_name(m) for m in models) and not default_models_dir().exists()):
        return user_cache_dir()
    return resolve_models_dir(models_dir) / ".cache"


def specs_from_flags(models, targets, params: dict, *, measure, models_dir: Path | None,
                     example: Callable[..., str] | None = None, runtime: dict | None = None) -> list:
    """The run specs of a command's flags: every model x every target. ``params`` holds the command's other
    parameters; the ones used here are taken out of it (what is left must be empty: every flag is accounted
    for). ``runtime``: runtime option values the command sets itself (loadgen's mode). Targets are checked
    first (unknown: exit 2, unavailable here: exit 3), then what the command still lacks (models, calibration
    data: the message shows a complete command, built by ``example(targets, int8, calib_data, models)``)."""
    from deploykit.bench.plan import check_qdq_profile, check_target
    from deploykit.core.errors import UsageError
    from deploykit.models.select import is_model_name
    from deploykit.spec.run import INT8, RunSpec, quantize_for

    weights, pretrained = params.pop("weights"), params.pop("pretrained")
    check_weights(weights, pretrained)
    models = expand_models(models) if models else []
    target_list = split_targets(targets)
    calib = {k: params.pop(k) for k in CALIB_KEYS}
    int8 = params.pop("int8")
    flags = pop_model_flags(params)
    preprocess = pop_preprocess(params)
    model_opts, opset = params.pop("model_opts"), params.pop("opset")
    opts = runtime_options(params, **(runtime or {}), cache_dir=str(cache_dir(models, models_dir, int8)))
    if params:  # a flag this function does not place: a bug in the command, not the user's error
        raise TypeError(f"unplaced parameters: {', '.join(params)}")
    qcfg = quantize_config(**calib) if int8 else None  # validated before any work
    for t in target_list:  # a target that cannot run here is the answer, whatever else is missing
        if qcfg is not None:  # the Q/DQ profile follows the target unless --profile names one it can run
            check_qdq_profile(t, quantize_for(qcfg, t))
        check_target(RunSpec(model="-", target=t, options=opts, measure=measure))
    if not models:
        raise UsageError("name the model(s) to measure, e.g. '"
                         + (example(target_list, int8, calib["calib_data"]) if example else "deploykit bench resnet50")
                         + "' ('deploykit models' lists them; .onnx files work too)")
    if qcfg is not None and not qcfg.calib_data:
        raise UsageError("--int8 needs --calib-data DIR (images preprocessed like the model's inputs) or "
                         "'--calib-data synthetic' for a smoke test"
                         + (", e.g. '" + example(target_list, int8, None, models) + "'" if example else ""))
    check_model_flags(models, flags)
    precision = INT8 if int8 else opts.precision
    if precision is None and len(target_list) > 1:
        # like with like: several targets side by side all run fp32 unless told otherwise (OpenVINO would pick
        # bf16 on a CPU with bf16 units, next to ONNX Runtime's fp32), as a sweep does; the tables say what ran
        precision = "fp32"
    specs = []
    for m in models:
        named = is_model_name(m)
        for t in target_list:
            specs.append(RunSpec(model=m, target=t, precision=precision,
                                 batch=measure.batch, resolution=measure.resolution,
                                 model_options=model_options(model_opts, model=m, **flags) if named else (),
                                 weights=str(weights) if weights and named else None, pretrained=pretrained and named,
                                 opset=opset, options=opts, quantize=qcfg, measure=measure,
                                 preprocess=tuple(preprocess.items())))
    return specs
