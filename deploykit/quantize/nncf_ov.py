"""NNCF post-training quantization for OpenVINO (``--quantizer nncf``): the fp32 ONNX file is read by OpenVINO,
quantized by ``nncf.quantize`` (FakeQuantize nodes) and saved as OpenVINO IR (.xml + .bin, weights kept f32
so nothing is rounded to f16 behind the scenes).

Recipes with ``transformer`` set (the ViT recipe) use ``ModelType.TRANSFORMER`` with the MIXED preset (symmetric
weights, asymmetric activations), as NNCF recommends; that mode ignores the Softmax -> MatMul pattern, so the
attention probabilities stay float there (``--softmax int8`` is the ONNX Runtime QDQ path, whose file OpenVINO
also reads). Others (the CNN recipe) use the PERFORMANCE preset. ``reduce_range`` maps to NNCF's overflow fix
(7-bit weights on CPUs without VNNI).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deploykit.core.errors import InputError, UsageError, squash
from deploykit.core.lazy import require


def quantize_nncf(src: Path, dest_xml: Path, calib_x: np.ndarray, *, transformer: bool, method: str,
                  reduce_range: bool, exclude: tuple[str, ...] = (), batch: int = 1) -> dict:
    ov = require("openvino", "NNCF quantization for OpenVINO")
    nncf = require("nncf", "NNCF quantization for OpenVINO")
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    core = ov.Core()
    try:
        model = core.read_model(str(src))
    except Exception as exc:
        raise InputError(f"OpenVINO cannot read {src}: {squash(exc)}") from None
    n = (len(calib_x) // batch) * batch or batch
    items = [calib_x[i:i + batch] for i in range(0, n, batch)]
    estimator = {"minmax": RangeEstimatorParametersSet.MINMAX,
                 "percentile": RangeEstimatorParametersSet.MEAN_QUANTILE}[method]
    advanced = AdvancedQuantizationParameters(
        overflow_fix=OverflowFix.ENABLE if reduce_range else OverflowFix.DISABLE,
        activations_range_estimator_params=estimator)
    vit = transformer
    ignored = None
    if exclude:
        types = {op.get_type_name() for op in model.get_ordered_ops()}
        ignored = nncf.IgnoredScope(types=[e for e in exclude if e in types],
                                    names=[e for e in exclude if e not in types])
    try:
        qmodel = nncf.quantize(
            model, nncf.Dataset(items), subset_size=len(items),
            preset=nncf.QuantizationPreset.MIXED if vit else nncf.QuantizationPreset.PERFORMANCE,
            model_type=nncf.ModelType.TRANSFORMER if vit else None,
            ignored_scope=ignored, advanced_parameters=advanced)
    except nncf.ValidationError as exc:
        raise UsageError(f"--exclude: {squash(exc)} (OpenVINO op types or node names)") from None
    except Exception as exc:
        msg = squash(exc) or type(exc).__name__
        raise InputError(f"NNCF quantization failed: {type(exc).__name__}: {msg}") from exc
    ov.save_model(qmodel, str(dest_xml), compress_to_fp16=False)
    ops = [op.get_type_name() for op in qmodel.get_ordered_ops()]
    return {
        "preset": "MIXED" if vit else "PERFORMANCE",
        "model_type": "TRANSFORMER" if vit else None,
        "range_estimator": method,
        "overflow_fix": "ENABLE" if reduce_range else "DISABLE",
        "fake_quantize": ops.count("FakeQuantize"),
        "ignored_scope": {"types": list(ignored.types), "names": list(ignored.names)} if ignored else None,
        "nncf": nncf.__version__,
        "openvino": ov.__version__ if hasattr(ov, "__version__") else ov.get_version(),
        "softmax_note": "NNCF's transformer mode ignores Softmax -> MatMul: the attention probabilities stay float"
                        if vit else None,
    }
