"""Accuracy study: fp32 vs int8 top-1 of small models trained here on a generated dataset (no downloads).

    python -m benchmarks.accuracy.study --out runs/accuracy                  # full study (~15-20 min on 2 quiet cores)
    python -m benchmarks.accuracy.study --out /tmp/acc --train 1000 --epochs 1 --test 200   # smoke run

Steps: generate "shapes10" (benchmarks/accuracy/data.py: 10 classes of shapes at 64x64, deterministic from
--seed) -> train each model on the CPU (AdamW, cosine schedule, seeded) -> export to ONNX (torch dynamo exporter,
opset 18) with a deploykit manifest carrying the dataset's mean/std -> ``deploykit.quantize.quantize_model`` on
the calib split (ONNX Runtime QDQ, cpu profile) with the test split as --eval-data, once per softmax path for
models with attention (float: probabilities and probabilities x V stay float; int8: fixed 1/255 output scale,
QLinearSoftmax) -> a table of fp32 vs int8 top-1/top-5, the drop in points and the fidelity numbers.

Models: ``cnn`` (a stride-2 stem and 5 conv-BN-ReLU layers, ~0.3 M params) and ``vit`` (patch 8, dim 96, depth 4, 3 heads, ~0.3 M
params), both defined here; ``--registry-model NAME`` adds any deploykit registry model (e.g. the ParC models), trained at 64x64 with its own 1000-way head (labels 0..9).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchmarks.accuracy import data as shapes

RES = 64


def build_cnn(num_classes: int = 10):
    from torch import nn

    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    stem = [nn.Conv2d(3, 24, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(24), nn.ReLU(inplace=True)]
    return nn.Sequential(*stem, *block(24, 32), nn.MaxPool2d(2), *block(32, 64), *block(64, 64),
                         nn.MaxPool2d(2), *block(64, 128), *block(128, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(128, num_classes))


def build_vit(num_classes: int = 10):
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(img_size=RES, patch_size=8, embed_dim=96, depth=4, num_heads=3, mlp_ratio=2.0,
                             num_classes=num_classes, class_token=True, global_pool="token")


STUDY_MODELS = {"cnn": (build_cnn, "cnn"), "vit": (build_vit, "vit")}


def _registry_builder(name: str):
    from deploykit.models.registry import create_model, get_cfg

    cfg = get_cfg(name)
    return (lambda num_classes=10: create_model(name, resolution=RES)), cfg.family


def to_tensor(u8: np.ndarray):
    import torch

    x = (u8.astype(np.float32) / 255.0 - np.array(shapes.MEAN, np.float32)) / np.array(shapes.STD, np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def train(model, xs: np.ndarray, ys: np.ndarray, *, epochs: int, seed: int, batch: int = 32, lr: float = 3e-3,
          log=print) -> dict:
    import torch
    from torch import nn

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    steps = epochs * ((len(xs) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1), pct_start=0.15)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    t0 = time.perf_counter()
    model.train()
    for ep in range(epochs):
        order = rng.permutation(len(xs))
        total, correct, loss_sum = 0, 0, 0.0
        for i in range(0, len(xs), batch):
            idx = order[i:i + batch]
            xb = xs[idx]
            flip = rng.random(len(idx)) < 0.5  # horizontal flips: every class is mirror-symmetric up to rotation
            xb = np.where(flip[:, None, None, None], xb[:, :, ::-1], xb)
            x, y = to_tensor(xb), torch.from_numpy(ys[idx])
            out = model(x)
            loss = loss_fn(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(idx)
            correct += int((out.argmax(1) == y).sum())
            total += len(idx)
        log(f"  epoch {ep + 1}/{epochs}: loss {loss_sum / total:.3f}, train acc {correct / total:.3f}, "
            f"{time.perf_counter() - t0:.0f} s")
    model.eval()
    return {"epochs": epochs, "seconds": round(time.perf_counter() - t0, 1), "train_acc": correct / max(total, 1)}


def export(model, path: Path, name: str, family: str, ckpt: Path) -> Path:
    """ONNX (dynamo exporter, opset 18, batch 1) plus a deploykit manifest (mean/std/family, crop_pct 1)."""
    import torch

    from deploykit.core.atomic import write_json
    from deploykit.export import artifacts
    from deploykit.core.hashing import file_sha256

    x = torch.zeros(1, 3, RES, RES)
    with torch.no_grad():
        prog = torch.onnx.export(model, (x,), None, dynamo=True, opset_version=18, input_names=["input"],
                                 output_names=["logits"], verbose=False)
    path.write_bytes(prog.model_proto.SerializeToString())
    write_json(artifacts.manifest_path(path), {
        "schema": artifacts.MANIFEST_SCHEMA, "schema_version": artifacts.MANIFEST_VERSION,
        "created": artifacts.now_iso(), "artifact": path.name, "sha256": file_sha256(path),
        "bytes": path.stat().st_size,
        "settings": {"model": f"shapes10_{name}", "precision": "fp32", "batch": 1, "resolution": RES, "opset": 18},
        "source": {"model": f"shapes10_{name}", "family": family, "weights": str(ckpt), "weights_sha256":
                   file_sha256(ckpt), "mean": list(shapes.MEAN), "std": list(shapes.STD), "crop_pct": 1.0,
                   "num_classes": 10},
        "verification": {"passed": True, "reference": "not verified (study model)"},
    })
    return path


def accuracy_torch(model, xs, ys, batch: int = 256) -> float:
    import torch

    correct = 0
    with torch.no_grad():
        for i in range(0, len(xs), batch):
            correct += int((model(to_tensor(xs[i:i + batch])).argmax(1).numpy() == ys[i:i + batch]).sum())
    return correct / len(xs)


def quantize_and_evaluate(onnx_path: Path, data_root: Path, softmax: str | None, calib_size: int, out_dir: Path,
                          seed: int) -> dict:
    from deploykit.core.config import QuantizeConfig
    from deploykit.quantize.pipeline import quantize_model

    q = QuantizeConfig(calib_data=str(data_root / "calib"), calib_size=calib_size, eval_data=str(data_root / "test"),
                       softmax=softmax, crop_pct=1.0, fidelity_samples=64, seed=seed, check_openvino=True,
                       verify=False)  # the study records the numbers whatever they are
    r = quantize_model(str(onnx_path), q, models_dir=out_dir / "int8")
    acc, fid, ov = r.report["accuracy"], r.report["fidelity"], r.report.get("openvino") or {}
    rt = r.report["runtime"]["onnxruntime"]
    return {
        "softmax": r.manifest["settings"]["softmax"], "int8_path": str(r.path),
        "fp32_top1": acc["fp32"]["top1"], "int8_top1": acc["int8"]["top1"],
        "fp32_top5": acc["fp32"]["top5"], "int8_top5": acc["int8"]["top5"],
        "top1_drop_points": acc["top1_drop_points"], "prediction_agreement": acc["prediction_agreement"],
        "test_images": acc["images"], "fidelity_passed": fid["passed"], "rel_max_abs": fid["rel_err"],
        "cosine_min": fid["cosine"], "cosine_mean": fid["cosine_mean"],
        "sqnr_db": fid["sqnr_db"], "openvino_cosine_min": ov.get("cosine"),
        "softmax_kernels": rt["softmax"], "int8_kernels": rt["int8_kernels"],
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/accuracy"))
    ap.add_argument("--models", default="cnn,vit", help="comma-separated: " + ", ".join(STUDY_MODELS))
    ap.add_argument("--registry-model", action="append", default=[], help="also a deploykit registry model")
    ap.add_argument("--train", type=int, default=3000)
    ap.add_argument("--calib", type=int, default=300)
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--calib-size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=None, help="[default: cnn 6, vit 10]")
    ap.add_argument("--lr", type=float, default=None,
                    help="peak learning rate [default: cnn 3e-3, vit 5e-4; at 3e-3 the ViT does not learn]")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)

    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    a.out.mkdir(parents=True, exist_ok=True)
    data_root = shapes.generate(a.out / "data", {"train": a.train, "calib": a.calib, "test": a.test}, seed=a.seed,
                                size=RES)
    xs, ys = shapes.load_split(data_root, "train")
    xt, yt = shapes.load_split(data_root, "test")
    builders = {m: STUDY_MODELS[m] for m in a.models.split(",") if m}
    for name in a.registry_model:
        builders[name] = _registry_builder(name)
    default_epochs = {"cnn": 6, "vit": 10}
    default_lr = {"cnn": 3e-3, "vit": 5e-4}
    results = []
    for name, (build, family) in builders.items():
        torch.manual_seed(a.seed)
        model = build(num_classes=10)
        epochs = a.epochs or default_epochs.get(family, 10)
        print(f"training {name} ({sum(p.numel() for p in model.parameters()) / 1e6:.2f} M params) for {epochs} "
              f"epochs on {len(xs)} images")
        info = train(model, xs, ys, epochs=epochs, seed=a.seed, lr=a.lr or default_lr.get(family, 1e-3))
        ckpt = a.out / f"{name}.pt"
        torch.save(model.state_dict(), ckpt)
        torch_top1 = accuracy_torch(model, xt, yt)
        onnx_path = export(model, a.out / f"shapes10_{name}.onnx", name, family, ckpt)
        paths = [None] if family == "cnn" else ["float", "int8"]
        for sm in paths:
            print(f"quantizing {name}" + (f" (softmax {sm})" if sm else ""))
            row = {"model": name, "family": family, "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
                   "train": info, "torch_fp32_top1": torch_top1,
                   **quantize_and_evaluate(onnx_path, data_root, sm, a.calib_size, a.out, a.seed)}
            results.append(row)
            print(f"  fp32 {row['fp32_top1']:.4f} -> int8 {row['int8_top1']:.4f} "
                  f"({row['top1_drop_points']:+.2f} points drop), cosine min {row['cosine_min']:.4f}")
    summary = {"dataset": json.loads((data_root / "dataset.json").read_text()), "results": results}
    (a.out / "results.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    md = ["| model | softmax | fp32 top-1 | int8 top-1 | drop (points) | fp32 top-5 | int8 top-5 | agreement | "
          "cosine min | SQNR dB | OpenVINO cosine min | softmax ran (ORT) |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        sk = r["softmax_kernels"]
        md.append(f"| {r['model']} | {r['softmax']} | {r['fp32_top1']:.4f} | {r['int8_top1']:.4f} | "
                  f"{r['top1_drop_points']:.2f} | {r['fp32_top5']:.4f} | {r['int8_top5']:.4f} | "
                  f"{r['prediction_agreement']:.4f} | {r['cosine_min']:.4f} | {r['sqnr_db']:.1f} | "
                  f"{r['openvino_cosine_min'] if r['openvino_cosine_min'] is None else format(r['openvino_cosine_min'], '.4f')} | "
                  f"int8 {sk['int8']}, float {sk['float']} |")
    (a.out / "results.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return summary


if __name__ == "__main__":
    main()
