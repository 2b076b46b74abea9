"""Train a registry model as an image classifier on a labelled folder tree (``DATA/train/<class>/``,
``DATA/val/<class>/``; ``deploykit data digits`` writes one), seeded and on the CPU, and save a checkpoint that
``--weights`` loads (its final classifier has the folder's number of classes: ``models.registry._fit_head``).

The recipe is plain and the same for every family: AdamW with a one-cycle learning rate, label smoothing 0.1,
random shifts of up to 1/8 of the side and +-10% scale (an affine grid with border padding; ViTs need it on a
set this small), the model's own preprocessing (mean/std, resize and center crop, as export, calibration and
--eval-data apply it). The val split is only evaluated, at the end, in
PyTorch fp32: the checkpoint records its top-1, the epochs, seed, wall time and the split's description.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from deploykit.core.errors import InputError, UsageError

Say = Callable[[str], None]


@dataclass(frozen=True)
class TrainConfig:
    model: str
    data: str  # a folder with train/ and val/ ImageFolder trees
    resolution: int = 32
    epochs: int = 10
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    seed: int = 0
    threads: int | None = None
    options: tuple[tuple[str, str], ...] = ()  # model options (parc_impl ...)
    augment: bool = True

    def __post_init__(self):
        from deploykit.core.config import require_int, require_positive

        require_int("--resolution", self.resolution, 8, 1024)
        require_int("--epochs", self.epochs, 1, 10_000)
        require_int("--batch-size", self.batch_size, 1, 65_536)
        require_positive("--lr", self.lr, maximum=10.0)
        require_positive("--weight-decay", self.weight_decay, allow_zero=True, maximum=10.0)
        require_int("--seed", self.seed, 0)
        require_int("--threads", self.threads, 1, 1024)


def _split(data: str, part: str) -> Path:
    p = Path(data) / part
    if not p.is_dir():
        raise InputError(f"{data} has no {part}/ folder (expected {data}/train/<class>/ and {data}/val/<class>/, as "
                         "'deploykit data digits' writes them)")
    return p


def _augment(x, gen, shift: float = 0.125, scale: float = 0.1):
    """Random shift (a fraction of the side) and scale of a batch, border-padded (an affine grid)."""
    import torch
    import torch.nn.functional as F

    n = x.shape[0]
    s = 1.0 + (torch.rand(n, generator=gen) * 2 - 1) * scale
    t = (torch.rand(n, 2, generator=gen) * 2 - 1) * shift * 2  # grid units span 2 per side
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = s
    theta[:, 1, 1] = s
    theta[:, :, 2] = t
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="border", align_corners=False)


def train(cfg: TrainConfig, out: str | Path, *, say: Say | None = None) -> dict:
    """Train ``cfg.model`` on ``cfg.data``/train, evaluate on /val, save ``out`` (a state_dict checkpoint with a
    ``deploykit`` description); returns that description."""
    import torch

    from deploykit.core.atomic import atomic_path, check_output_file
    from deploykit.models.registry import create_model, get_cfg, set_num_classes
    from deploykit.quantize.calib import DEFAULT_CROP_PCT, Preprocess, load_labelled

    say = say or (lambda msg: None)
    mcfg = get_cfg(cfg.model)
    out = check_output_file(Path(out), "checkpoint")
    # the model's own preprocessing, as every later reader (export manifest, calibration, --eval-data) applies it
    pp = Preprocess(resolution=cfg.resolution, channels=mcfg.channels, mean=mcfg.mean, std=mcfg.std,
                    crop_pct=mcfg.crop_pct or DEFAULT_CROP_PCT, interpolation=mcfg.interpolation)
    say("reading the train and val folders")
    tr = load_labelled(_split(cfg.data, "train"), pp, what="train data")
    va = load_labelled(_split(cfg.data, "val"), pp, what="val data")
    if tr.classes != va.classes:
        raise InputError(f"{cfg.data}: train/ and val/ hold different classes ({len(tr.classes or [])} vs "
                         f"{len(va.classes or [])})")
    seen = set(tr.digests())
    overlap = [f for f, d in zip(va.files, va.digests()) if d in seen]  # by content: copies under any name
    if overlap:
        raise InputError(f"{cfg.data}: {len(overlap)} images of val/ are also in train/ (e.g. val/{overlap[0]})")
    classes = list(tr.classes or [])
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, resolution=cfg.resolution, seed=cfg.seed, options=dict(cfg.options))
    set_num_classes(model, len(classes))
    x = torch.from_numpy(np.ascontiguousarray(tr.x, dtype=np.float32))
    y = torch.from_numpy(np.asarray(tr.labels, dtype=np.int64))
    gen = torch.Generator().manual_seed(cfg.seed)
    steps = cfg.epochs * ((len(x) + cfg.batch_size - 1) // cfg.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.2)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    t0 = time.perf_counter()
    model.train()
    for epoch in range(cfg.epochs):
        order = torch.randperm(len(x), generator=gen)
        total, seen = 0.0, 0
        for i in range(0, len(x), cfg.batch_size):
            idx = order[i:i + cfg.batch_size]
            xb, yb = x[idx], y[idx]
            if cfg.augment:
                xb = _augment(xb, gen)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            if not torch.isfinite(loss):
                raise UsageError(f"training {cfg.model} diverged at epoch {epoch + 1} (loss {float(loss)}): "
                                 "try a lower --lr")
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss) * len(idx)
            seen += len(idx)
        say(f"epoch {epoch + 1}/{cfg.epochs}: loss {total / seen:.4f} ({time.perf_counter() - t0:.0f} s)")
    seconds = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        xv = torch.from_numpy(np.ascontiguousarray(va.x, dtype=np.float32))
        pred = torch.cat([model(xv[i:i + 256]).argmax(1) for i in range(0, len(xv), 256)]).numpy()
    top1 = float(np.mean(pred == np.asarray(va.labels)))
    desc = {"model": cfg.model, "options": dict(cfg.options), "resolution": cfg.resolution, "classes": classes,
            "data": str(cfg.data), "train_images": int(len(x)), "val_images": int(len(va.labels)),
            "epochs": cfg.epochs, "batch_size": cfg.batch_size, "lr": cfg.lr, "seed": cfg.seed,
            "train_seconds": round(seconds, 2), "val_top1_fp32_pytorch": top1,
            "torch": str(torch.__version__)}
    with atomic_path(out) as tmp:
        torch.save({"state_dict": model.state_dict(), "deploykit": desc}, tmp)
    return desc
