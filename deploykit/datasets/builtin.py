"""Built-in image sets, materialised as folders so that everything reads them through the one folder reader users'
own data goes through (``quantize/calib.py``: ``load_labelled`` for ImageFolder trees, ``load_images`` for loose
images). Nothing is downloaded: the images ship inside wheels deploykit already depends on.

``digits``: scikit-learn's 1,797 labelled 8x8 handwritten digits (``sklearn/datasets/data/digits.csv.gz``; the UCI
"Optical Recognition of Handwritten Digits" set, CC BY 4.0; scikit-learn itself BSD-3-Clause), upscaled to
``size`` px, 3 channels, split once by a seeded shuffle into ``train/`` and ``val/`` with one folder per class
(``0`` .. ``9``). The split's member indices are recorded in ``dataset.json``; ``val`` is never used for
training or calibration (calibrate on ``train``).

``photos``: natural photographs for calibration (realistic activation ranges instead of noise):
scikit-learn's ``china.jpg`` and ``flower.jpg`` (CC BY 2.0, by danielbuechele and vultilion on Flickr, as
scikit-learn's ``datasets/images/README.txt`` records) and matplotlib's ``grace_hopper.jpg`` (a US Navy photograph,
public domain), cut into ``count`` deterministic crops (seeded scale, aspect, position and flip) of ``size`` px.

The tree is written into a temporary folder beside ``out`` and renamed onto it when complete: an interrupted run
leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Iterator

import numpy as np

from deploykit.core.errors import InputError, UsageError

SETS = ("digits", "photos")
DATASET_FILE = "dataset.json"
DIGITS_SOURCE = {"name": "digits", "origin": "scikit-learn sklearn/datasets/data/digits.csv.gz (UCI Optical "
                 "Recognition of Handwritten Digits)", "licence": "CC BY 4.0 (UCI dataset); scikit-learn BSD-3-Clause"}
PHOTOS = (("sklearn", "china.jpg", "CC BY 2.0, danielbuechele (Flickr), via scikit-learn"),
          ("sklearn", "flower.jpg", "CC BY 2.0, vultilion (Flickr), via scikit-learn"),
          ("matplotlib", "grace_hopper.jpg", "public domain (US Navy photograph), via matplotlib"))


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """(images N x 8 x 8 in 0..16, labels N) from scikit-learn's wheel."""
    from deploykit.core.lazy import require

    datasets = require("sklearn.datasets", "deploykit data digits")
    d = datasets.load_digits()
    return np.asarray(d.images, dtype=np.float64), np.asarray(d.target, dtype=np.int64)


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded shuffle of 0..n-1 cut into (train, val), each sorted: disjoint, covering every index."""
    if not 0 < val_fraction < 1:
        raise UsageError(f"--val-fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(n * val_fraction)))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _fresh(out: Path, force: bool) -> Path:
    """A new temporary folder beside ``out`` (``out`` must not exist, or be replaced with ``force``)."""
    import tempfile

    from deploykit.core.atomic import ensure_dir, sweep_stale, tmp_prefix

    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise InputError(f"{out} exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not force:
        raise InputError(f"{out} already exists and is not empty: choose another -o folder, or --force to replace it")
    ensure_dir(out.parent if str(out.parent) else Path("."))
    sweep_stale(out.parent)
    return Path(tempfile.mkdtemp(prefix=tmp_prefix(out.name) + ".", dir=out.parent))


@contextlib.contextmanager
def _building(out: Path, force: bool) -> Iterator[Path]:
    """A temporary folder beside ``out`` to write the set into; removed when the writing fails or is interrupted."""
    tmp = _fresh(out, force)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _publish(tmp: Path, out: Path, desc: dict) -> dict:
    """The set's description beside it, then the finished folder renamed onto ``out``."""
    (tmp / DATASET_FILE).write_text(json.dumps(desc, indent=1) + "\n")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return desc


def write_digits(out: str | Path, *, size: int = 32, val_fraction: float = 0.2, seed: int = 0,
                 force: bool = False) -> dict:
    """The digits set as ``out/train/<class>/<index>.png`` and ``out/val/<class>/<index>.png`` (RGB, ``size`` px,
    bilinear upscaling of the 8x8 originals) and ``out/dataset.json``; returns that description."""
    from PIL import Image

    from deploykit.core.config import require_int

    require_int("--size", size, 8, 1024)
    out = Path(out)
    images, labels = _digits()
    train, val = split_indices(len(labels), val_fraction, seed)
    with _building(out, force) as tmp:
        for part, idx in (("train", train), ("val", val)):
            for i in idx:
                folder = tmp / part / str(int(labels[i]))
                folder.mkdir(parents=True, exist_ok=True)
                gray = np.clip(images[i] * (255.0 / 16.0), 0, 255).astype(np.uint8)
                im = Image.fromarray(gray, mode="L").resize((size, size), Image.Resampling.BILINEAR).convert("RGB")
                im.save(folder / f"{int(i):04d}.png")
        desc = {"set": "digits", "source": DIGITS_SOURCE, "size": size, "channels": 3, "seed": seed,
                "val_fraction": val_fraction, "classes": [str(c) for c in range(10)],
                "counts": {"train": int(len(train)), "val": int(len(val))},
                "split": {"train": [int(i) for i in train], "val": [int(i) for i in val]}}
        return _publish(tmp, out, desc)


def _photo_path(package: str, name: str) -> Path:
    from deploykit.core.lazy import require

    if package == "sklearn":
        module = require("sklearn.datasets", "deploykit data photos")
        return Path(module.__file__ or ".").parent / "images" / name
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data" / name


def write_photos(out: str | Path, *, count: int = 256, size: int = 224, seed: int = 0, force: bool = False) -> dict:
    """``count`` deterministic crops of the bundled photographs as ``out/photo-<k>.png`` (RGB, ``size`` px): random
    resized crops (8-100% of the area, aspect 3/4-4/3) with a seeded generator, half of them flipped."""
    from PIL import Image

    from deploykit.core.config import require_int

    require_int("--count", count, 1, 100_000)
    require_int("--size", size, 8, 4096)
    out = Path(out)
    sources = []
    for package, name, licence in PHOTOS:
        p = _photo_path(package, name)
        if p.is_file():
            sources.append((p, licence))
    if not sources:
        raise InputError("no bundled photographs found (scikit-learn and matplotlib ship them)")
    rng = np.random.default_rng(seed)
    with _building(out, force) as tmp:
        opened = [Image.open(p).convert("RGB") for p, _ in sources]
        crops = []
        for k in range(count):
            j = k % len(opened)
            im = opened[j]
            w, h = im.size
            area = w * h * rng.uniform(0.08, 1.0)
            aspect = float(np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3))))
            cw = int(min(w, max(8, round((area * aspect) ** 0.5))))
            ch = int(min(h, max(8, round((area / aspect) ** 0.5))))
            x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            flip = bool(rng.integers(0, 2))
            crop = im.crop((x0, y0, x0 + cw, y0 + ch)).resize((size, size), Image.Resampling.BILINEAR)
            if flip:
                crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            crop.save(tmp / f"photo-{k:04d}.png")
            crops.append({"file": f"photo-{k:04d}.png", "source": sources[j][0].name, "box": [x0, y0, cw, ch],
                          "flip": flip})
        desc = {"set": "photos", "size": size, "count": count, "seed": seed,
                "sources": [{"file": p.name, "licence": lic} for p, lic in sources], "crops": crops}
        return _publish(tmp, out, desc)
