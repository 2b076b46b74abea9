"""Accuracy of the artifact on labelled images, on the runtime that runs it (``bench --eval-data DIR``).

After the timed loop, the loaded session itself (the target, its options and precision as measured) runs every
image of the folder (one sub-folder per class, read by ``quantize/calib.load_labelled``, preprocessed as the model
expects); top-1 / top-5 with a Wilson interval. For an int8 artifact the fp32 file it was quantized from runs the
same images in ONNX Runtime (fp32), and the change is paired image by image: the drop with a paired bootstrap
95% interval and McNemar's exact p-value (``bench/stats.paired_accuracy``).

Outputs of the timed loop are outputs that were evaluated (in the spirit of MLPerf's TEST01): the output of the
timed input after the last timed iteration must match the output the same session gave for it before the loop,
which the fidelity check judged; a runtime that is fast because it computes something else is reported.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import numpy as np

from deploykit.core.errors import InputError

Say = Callable[[str], None]


def preprocess_of(model):
    """How the model's inputs are made from images: the manifest's / the model's own mean, std, crop and resize
    (a file without a manifest: ImageNet's, which the report names)."""
    from deploykit.quantize.calib import DEFAULT_CROP_PCT, Preprocess

    n, c, h, w = model.input_shape
    if h != w:
        raise InputError(f"{model.label}: input is {h}x{w}; --eval-data evaluates square inputs only")
    return Preprocess(resolution=h, channels=c, mean=tuple(model.mean), std=tuple(model.std),
                      crop_pct=model.crop_pct or DEFAULT_CROP_PCT, interpolation=model.interpolation)


def run_images(runtime, x: np.ndarray, batch: int) -> np.ndarray:
    """Logits of every image through the loaded session, in its batch size (the last batch padded, its padding
    dropped)."""
    out = []
    for i in range(0, len(x), batch):
        xb = x[i:i + batch]
        n = len(xb)
        if n < batch:
            xb = np.concatenate([xb, np.repeat(xb[-1:], batch - n, axis=0)])
        runtime.set_input(np.ascontiguousarray(xb))
        runtime.infer()
        y = np.asarray(runtime.outputs()[0], dtype=np.float64).reshape(batch, -1)
        out.append(y[:n])
    return np.concatenate(out)


def correctness(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(top-1 right, top-5 right) per image."""
    order = np.argsort(-logits, axis=1)
    top1 = order[:, 0] == labels
    top5 = (order[:, :5] == labels[:, None]).any(axis=1)
    return top1, top5


def evaluate(runtime, model, eval_data: str, eval_size: int | None, *, seed: int = 0, target: str = "",
             say: Say | None = None) -> dict:
    """The report's ``accuracy`` section for ``model`` loaded in ``runtime``."""
    from deploykit.bench.stats import paired_accuracy, proportion_ci
    from deploykit.quantize.calib import load_labelled

    say = say or (lambda msg: None)
    pp = preprocess_of(model)
    data = load_labelled(eval_data, pp, eval_size, seed=seed, what="--eval-data")
    if model.precision == "int8" and model.manifest:
        from deploykit.quantize.calib import refuse_overlap

        calibration = (model.manifest.get("quantization") or {}).get("calibration") or {}
        refuse_overlap(data, calibration.get("image_digests"))
    labels = np.asarray(data.labels)
    say(f"evaluating {model.label} on {len(labels)} labelled images of {eval_data} on {target}")
    logits = run_images(runtime, data.x, model.input_shape[0])
    classes = list(data.classes or [])
    labels, mapping = model_labels(classes, labels, logits.shape[1], str(eval_data), model.label)
    top1, top5 = correctness(logits, labels)
    k = int(top1.sum())
    low, high = proportion_ci(k, len(labels))
    out = {"data": str(eval_data), "n": int(len(labels)), "classes": len(classes), "runtime": target,
           "top1": k / len(labels), "top1_ci95": [low, high],
           "top5": float(top5.mean()) if logits.shape[1] > 5 else None,
           "label_mapping": mapping, "preprocess": {**pp.describe(), "source": model.preprocess_source},
           "predictions": [int(p) for p in np.argmax(logits, axis=1)],
           "files": list(data.files)}
    ref = _fp32_reference(model)
    if ref is not None:
        from deploykit.quantize.evaluate import OrtModel

        say(f"evaluating the fp32 model {Path(ref).name} it was quantized from on the same images (ONNX Runtime)")
        ref_logits = np.asarray(OrtModel(str(ref))(data.x), dtype=np.float64).reshape(len(labels), -1)
        ref_top1, ref_top5 = correctness(ref_logits, labels)
        out["fp32"] = {"path": str(ref), "runtime": "ort (fp32)", "top1": float(ref_top1.mean()),
                       "top5": float(ref_top5.mean()) if ref_logits.shape[1] > 5 else None}
        out["vs_fp32"] = paired_accuracy(ref_top1, top1, seed=seed)
    return out


SYNSET = re.compile(r"^n\d{8}$")


def imagenet_synsets() -> list[str]:
    """The 1,000 ImageNet-1k WordNet ids in class-index order (timm ships the list)."""
    import timm.data

    path = Path(timm.data.__file__).parent / "_info" / "imagenet_synsets.txt"
    try:
        ids = path.read_text().split()
    except OSError as exc:
        raise InputError(f"cannot read ImageNet's synset list from timm ({path}): {exc}") from None
    if len(ids) != 1000:
        raise InputError(f"timm's ImageNet synset list {path} has {len(ids)} entries, not 1000")
    return ids


def model_labels(classes: list[str], labels: np.ndarray, outputs: int, folder: str,
                 label: str) -> tuple[np.ndarray, str]:
    """The folder's labels as the model's class indices, and how they were mapped: an ImageNet-style folder
    (synset-named classes, any subset of the 1,000) by ImageNet's class order for a 1000-class model; otherwise the
    ImageFolder rule (sorted folder names = 0..K-1), which needs exactly as many classes as the model outputs."""
    if classes and all(SYNSET.match(c) for c in classes) and outputs == 1000:
        index = {s: i for i, s in enumerate(imagenet_synsets())}
        unknown = [c for c in classes if c not in index]
        if unknown:
            raise InputError(f"--eval-data {folder}: {unknown[0]} is not one of ImageNet-1k's 1,000 classes "
                             f"({len(unknown)} such folders)")
        return np.array([index[classes[i]] for i in labels], dtype=np.int64), "imagenet-synsets"
    if len(classes) != outputs:
        raise InputError(f"--eval-data {folder} has {len(classes)} classes ({', '.join(classes[:3])}"
                         f"{', ...' if len(classes) > 3 else ''}) but {label} outputs {outputs}: the labels and the "
                         "model's classes disagree (one sub-folder per class, sorted names in the order of the "
                         "model's outputs; ImageNet synset folders map to a 1000-class model; a model trained "
                         "with 'deploykit train' has the folder's classes)")
    return labels, "imagefolder"


def _fp32_reference(model) -> Path | None:
    """The fp32 ONNX file an int8 artifact was quantized from (its manifest says), where it is still there."""
    if model.precision != "int8" or not model.manifest:
        return None
    p = (model.manifest.get("source") or {}).get("fp32_artifact")
    return Path(p) if p and Path(p).is_file() else None


def timed_outputs_check(before: np.ndarray, after: np.ndarray) -> dict:
    """The timed input's output after the timed loop against the one the fidelity check judged before it."""
    a = np.asarray(before, dtype=np.float64).ravel()
    b = np.asarray(after, dtype=np.float64).ravel()
    if a.shape != b.shape:
        return {"passed": False, "max_abs": None, "reason": f"output shape changed: {before.shape} vs {after.shape}"}
    scale = max(float(np.max(np.abs(a))), 1e-12)
    err = float(np.max(np.abs(a - b))) if a.size else 0.0
    passed = bool(np.all(np.isfinite(b))) and err <= 1e-3 * scale
    return {"passed": passed, "max_abs": err, "rel": err / scale,
            "reason": "" if passed else "the timed loop's output differs from the evaluated output of the same input"}
