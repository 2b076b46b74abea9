"""A labelled image dataset deploykit generates itself ("shapes10"): no download, deterministic from a seed.

Ten classes of filled shapes (circle, square, triangle, cross, ring, star, hexagon, two dots, stripes, arrow)
at random position, size, rotation and colour, on a random gradient background with noise and distractor
strokes, so that a model has to find a shape and read its outline (spatial structure), not count colours.
Images are RGB PNGs (default 64x64) in one sub-folder per class:

    <root>/train/<class>/<index>.png   <root>/calib/...   <root>/test/...

The same (seed, split, index) always gives the same image (numpy PCG64 + Pillow drawing).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

CLASSES = ("arrow", "circle", "cross", "hexagon", "ring", "square", "star", "stripes", "triangle", "two_dots")
SPLITS = {"train": 0, "calib": 1, "test": 2}
DEFAULT_COUNTS = {"train": 6000, "calib": 300, "test": 2000}
MEAN = (0.5, 0.5, 0.5)  # the study models normalise with these (the dataset is roughly centred there)
STD = (0.25, 0.25, 0.25)


def _poly(cx, cy, r, n, rot, inner=None):
    pts = []
    for k in range(n * (2 if inner else 1)):
        rr = r if (inner is None or k % 2 == 0) else r * inner
        a = rot + 2 * math.pi * k / (n * (2 if inner else 1))
        pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
    return pts


def _rotated(points, cx, cy, rot):
    c, s = math.cos(rot), math.sin(rot)
    return [(cx + (x - cx) * c - (y - cy) * s, cy + (x - cx) * s + (y - cy) * c) for x, y in points]


def _color(rng, avoid=None):
    while True:
        col = tuple(int(v) for v in rng.integers(0, 256, size=3))
        if avoid is None or sum(abs(a - b) for a, b in zip(col, avoid)) > 180:
            return col


def make_image(label: int, rng: np.random.Generator, size: int = 64):
    from PIL import Image, ImageDraw

    # background: a linear gradient between two random colours, plus pixel noise
    c0, c1 = np.array(_color(rng), np.float32), np.array(_color(rng), np.float32)
    t = np.linspace(0, 1, size, dtype=np.float32)
    ang = rng.uniform(0, 2 * math.pi)
    grid = (np.cos(ang) * t[None, :] + np.sin(ang) * t[:, None])
    grid = (grid - grid.min()) / max(float(np.ptp(grid)), 1e-6)
    bg = c0[None, None, :] * (1 - grid[..., None]) + c1[None, None, :] * grid[..., None]
    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    avg = tuple(int(v) for v in bg.mean(axis=(0, 1)))
    # distractors: thin strokes and small blobs in random colours
    for _ in range(int(rng.integers(2, 5))):
        x0, y0, x1, y1 = (float(v) for v in rng.uniform(0, size, 4))
        draw.line((x0, y0, x1, y1), fill=_color(rng), width=int(rng.integers(1, 3)))
    for _ in range(int(rng.integers(0, 3))):
        x0, y0 = (float(v) for v in rng.uniform(0, size, 2))
        r = float(rng.uniform(1.5, 3.5))
        draw.ellipse((x0 - r, y0 - r, x0 + r, y0 + r), fill=_color(rng))
    # the shape
    s = size / 64.0
    r = float(rng.uniform(11, 22)) * s
    margin = r + 2 * s
    cx, cy = (float(v) for v in rng.uniform(margin, size - margin, 2))
    rot = float(rng.uniform(0, 2 * math.pi))
    col = _color(rng, avoid=avg)
    name = CLASSES[label]
    if name == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=col)
    elif name == "ring":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=col)
        ri = r * float(rng.uniform(0.45, 0.65))
        draw.ellipse((cx - ri, cy - ri, cx + ri, cy + ri), fill=avg)
    elif name == "square":
        draw.polygon(_poly(cx, cy, r, 4, rot), fill=col)
    elif name == "triangle":
        draw.polygon(_poly(cx, cy, r, 3, rot), fill=col)
    elif name == "hexagon":
        draw.polygon(_poly(cx, cy, r, 6, rot), fill=col)
    elif name == "star":
        draw.polygon(_poly(cx, cy, r, 5, rot, inner=0.45), fill=col)
    elif name == "cross":
        w = r * 0.35
        for dx, dy in ((r, w), (w, r)):
            draw.polygon(_rotated([(cx - dx, cy - dy), (cx + dx, cy - dy), (cx + dx, cy + dy), (cx - dx, cy + dy)],
                                  cx, cy, rot), fill=col)
    elif name == "two_dots":
        d, rd = r * 0.6, r * 0.38
        for sgn in (-1, 1):
            px, py = cx + sgn * d * math.cos(rot), cy + sgn * d * math.sin(rot)
            draw.ellipse((px - rd, py - rd, px + rd, py + rd), fill=col)
    elif name == "stripes":
        w = r * 0.22
        for k in (-1, 0, 1):
            off = k * r * 0.6
            pts = [(cx - r, cy + off - w), (cx + r, cy + off - w), (cx + r, cy + off + w), (cx - r, cy + off + w)]
            draw.polygon(_rotated(pts, cx, cy, rot), fill=col)
    elif name == "arrow":
        w = r * 0.22
        pts = [(cx - r, cy - w), (cx + 0.1 * r, cy - w), (cx + 0.1 * r, cy - 2.4 * w), (cx + r, cy),
               (cx + 0.1 * r, cy + 2.4 * w), (cx + 0.1 * r, cy + w), (cx - r, cy + w)]
        draw.polygon(_rotated(pts, cx, cy, rot), fill=col)
    arr = np.asarray(img, dtype=np.float32)
    arr += rng.normal(0, float(rng.uniform(4, 14)), size=arr.shape).astype(np.float32)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, SPLITS[split], index])


def generate(root: str | Path, counts: dict[str, int] | None = None, *, seed: int = 0, size: int = 64,
             classes: int = len(CLASSES)) -> Path:
    """Write the dataset under ``root`` (skipped when a matching one is already there); returns ``root``."""
    root = Path(root)
    counts = {**DEFAULT_COUNTS, **(counts or {})}
    meta = {"dataset": "shapes10", "seed": seed, "size": size, "classes": list(CLASSES[:classes]), "counts": counts,
            "mean": list(MEAN), "std": list(STD)}
    stamp = root / "dataset.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == meta:
        return root
    for split, n in counts.items():
        for k in range(classes):
            (root / split / CLASSES[k]).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            label = i % classes
            img = make_image(label, image_rng(seed, split, i), size)
            img.save(root / split / CLASSES[label] / f"{i:05d}.png")
    stamp.write_text(json.dumps(meta, indent=2) + "\n")
    return root


def load_split(root: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 N x H x W x 3 images, int64 labels) of a generated split, in index order."""
    from PIL import Image

    root = Path(root)
    meta = json.loads((root / "dataset.json").read_text())
    classes = meta["classes"]
    n = meta["counts"][split]
    xs, ys = [], []
    for i in range(n):
        label = i % len(classes)
        with Image.open(root / split / classes[label] / f"{i:05d}.png") as im:
            xs.append(np.asarray(im.convert("RGB")))
        ys.append(label)
    return np.stack(xs), np.array(ys, dtype=np.int64)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=64)
    for split, n in DEFAULT_COUNTS.items():
        ap.add_argument(f"--{split}", type=int, default=n, help=f"images in the {split} split")
    a = ap.parse_args(argv)
    generate(a.root, {"train": a.train, "calib": a.calib, "test": a.test}, seed=a.seed, size=a.size)
    print(a.root)


if __name__ == "__main__":
    main()
