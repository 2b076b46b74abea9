"""Calibration and evaluation data: image folders read with Pillow and preprocessed the way the model expects
(resize the shorter side to resolution / crop_pct, center-crop, scale to [0, 1], subtract mean, divide by std,
NCHW float32), or seeded synthetic noise when explicitly asked for (a smoke test, with a warning).

Every problem with a folder is a one-line InputError naming the file: missing or empty folder, no images, an
unreadable/corrupt image, or images whose channels do not fit the model (grayscale or RGBA for an RGB model,
colour images for a 1-channel model). Nothing is written while data is read.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from deploykit.core.errors import InputError, UsageError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm")
DEFAULT_CROP_PCT = 0.875  # the ImageNet evaluation convention (resize 256, crop 224)
SYNTHETIC = "synthetic"
SYNTHETIC_WARNING = ("calibrating on synthetic noise (--calib-data synthetic): a smoke test only; activation ranges "
                     "from noise do not represent real images, so the int8 model's accuracy means nothing")

# Pillow modes by channel layout
_GRAY = {"1", "L", "I", "I;16", "I;16B", "I;16L", "F"}
_ALPHA = {"RGBA", "LA", "PA", "RGBa", "La"}
_COLOR = {"RGB", "CMYK", "YCbCr", "LAB", "HSV", "RGBX"}


@dataclass(frozen=True)
class Preprocess:
    resolution: int
    channels: int = 3
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    crop_pct: float = DEFAULT_CROP_PCT
    interpolation: str = "bilinear"
    channel_order: str = "rgb"  # rgb | bgr (the order of the model's input channels)
    value_range: float = 1.0  # pixels scaled to [0, value_range] before mean/std: 1 (most models) or 255

    def __post_init__(self):
        if self.channel_order not in ("rgb", "bgr"):
            raise UsageError(f"channel order must be rgb or bgr, got {self.channel_order!r}")
        if not (math.isfinite(self.value_range) and 0 < self.value_range <= 65535):
            raise UsageError(f"value range must be a positive number (1 or 255), got {self.value_range}")

    @property
    def resize_to(self) -> int:
        return int(math.floor(self.resolution / self.crop_pct))

    def describe(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        d["resize_shorter_side_to"] = self.resize_to
        return d


@dataclass
class ImageSet:
    x: np.ndarray  # N x C x H x W float32
    files: list[str]  # relative to the folder
    folder: str
    found: int  # images found in the folder (before sampling)
    skipped: int  # non-image files ignored
    labels: np.ndarray | None = None
    classes: list[str] | None = None

    @property
    def sha256(self) -> str:
        h = hashlib.sha256(np.ascontiguousarray(self.x).tobytes())
        if self.labels is not None:
            h.update(self.labels.astype(np.int64).tobytes())
        return h.hexdigest()

    def digests(self) -> list[str]:
        """A short digest of each preprocessed image: the same picture preprocessed the same way has the same one,
        whatever its file is called or where it lies (how a held-out set is checked against a calibration set)."""
        return [hashlib.sha256(np.ascontiguousarray(im).tobytes()).hexdigest()[:16] for im in self.x]

    def describe(self) -> dict:
        d = {"folder": self.folder, "images_found": self.found, "images_used": len(self.files),
             "non_images_skipped": self.skipped, "sha256": self.sha256}
        if self.folder != SYNTHETIC:
            d["image_digests"] = self.digests()
        if self.classes is not None:
            d["classes"] = len(self.classes)
        return d


def list_images(folder: str | Path, what: str = "--calib-data") -> tuple[list[Path], int]:
    """Image files under ``folder`` (recursive, sorted) and the number of other files skipped."""
    root = Path(folder)
    if not root.exists():
        raise InputError(f"{what} folder not found: {root}")
    if not root.is_dir():
        raise InputError(f"{what} {root} is not a folder")
    try:
        files = sorted(p for p in root.rglob("*") if p.is_file() and not any(
            part.startswith(".") for part in p.relative_to(root).parts))
    except PermissionError as exc:
        raise InputError(f"{what}: cannot read {exc.filename or root}: permission denied") from None
    images = [p for p in files if p.suffix.lower() in IMAGE_EXTS]
    if not files:
        raise InputError(f"{what} folder {root} is empty: no images found")
    if not images:
        raise InputError(f"{what} folder {root} holds no images ({len(files)} other file(s), e.g. "
                         f"{files[0].relative_to(root)}; image types: {' '.join(IMAGE_EXTS)})")
    return images, len(files) - len(images)


def load_image(path: Path, pp: Preprocess) -> np.ndarray:
    """One image as a C x H x W float32 array, preprocessed with ``pp``."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # a header claiming more pixels than Pillow's limit (MAX_IMAGE_PIXELS, ~89 M): a decompression bomb
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
                img = _to_model_mode(im, path, pp.channels)
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(f"image {path} claims more pixels than Pillow's limit of {Image.MAX_IMAGE_PIXELS:,} "
                         "(a decompression bomb, or an image far larger than calibration needs)") from None
    except MemoryError:
        raise InputError(f"image {path} is too large to decode in memory") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read image {path}: {first[:160]} (corrupt or not an image)") from None
    w, h = img.size
    if w < 1 or h < 1:
        raise InputError(f"image {path} is empty ({w}x{h})")
    scale = pp.resize_to / min(w, h)
    nw, nh = max(pp.resolution, round(w * scale)), max(pp.resolution, round(h * scale))
    resample = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
                "nearest": Image.Resampling.NEAREST}[pp.interpolation]
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), resample)
    left, top = (nw - pp.resolution) // 2, (nh - pp.resolution) // 2
    img = img.crop((left, top, left + pp.resolution, top + pp.resolution))
    arr = np.asarray(img, dtype=np.float32) * np.float32(pp.value_range / 255.0)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    elif pp.channel_order == "bgr":
        arr = arr[:, :, ::-1]
    mean = np.asarray(pp.mean, dtype=np.float32).reshape(1, 1, -1)
    std = np.asarray(pp.std, dtype=np.float32).reshape(1, 1, -1)
    arr = (arr - mean) / std
    return np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32)


def _to_model_mode(im, path: Path, channels: int):
    mode = im.mode
    if mode == "P":
        has_alpha = "transparency" in im.info
        mode = "PA" if has_alpha else "RGB"
        if not has_alpha:
            im = im.convert("RGB")
    if channels == 3:
        if mode in _ALPHA:
            raise InputError(f"image {path} has an alpha channel (mode {im.mode}); the model takes 3-channel RGB "
                             "images: flatten it onto a background and save it as RGB")
        if mode in _GRAY:
            raise InputError(f"image {path} is grayscale (mode {im.mode}); the model takes 3-channel RGB images: "
                             "convert it to RGB")
        if mode not in _COLOR:
            raise InputError(f"image {path} has an unsupported mode {im.mode} for a 3-channel model")
        return im if im.mode == "RGB" else im.convert("RGB")
    if channels == 1:
        if mode in _ALPHA or mode in _COLOR:
            raise InputError(f"image {path} has {len(im.getbands())} channels (mode {im.mode}); the model takes "
                             "1-channel grayscale images: convert it to grayscale (mode L)")
        return im if im.mode == "L" else im.convert("L")
    raise InputError(f"models with {channels} input channels cannot be fed from image files")


def _sample(items: list, n: int | None, seed: int) -> list:
    if n is None or len(items) <= n:
        return list(items)
    idx = np.sort(np.random.default_rng(seed).choice(len(items), size=n, replace=False))
    return [items[i] for i in idx]


def load_images(folder: str | Path, pp: Preprocess, n: int | None, *, seed: int = 0, what: str = "--calib-data",
                exclude: set[str] | None = None) -> ImageSet:
    """Up to ``n`` images from ``folder`` (a seeded sample when there are more), preprocessed with ``pp``.
    ``exclude``: relative paths not to use (e.g. the calibration images when picking held-out ones)."""
    root = Path(folder)
    images, skipped = list_images(root, what)
    rel = [str(p.relative_to(root)) for p in images]
    pool = [(r, p) for r, p in zip(rel, images) if not exclude or r not in exclude]
    if not pool:
        raise InputError(f"{what} folder {root}: no images left after the {len(images)} used for calibration")
    chosen = _sample(pool, n, seed)
    x = np.stack([load_image(p, pp) for _, p in chosen])
    return ImageSet(x=x, files=[r for r, _ in chosen], folder=str(root), found=len(images), skipped=skipped)


def load_labelled(folder: str | Path, pp: Preprocess, n: int | None = None, *, seed: int = 0,
                  what: str = "--eval-data") -> ImageSet:
    """A labelled set: one sub-folder per class (sorted names -> class indices 0..K-1, the ImageFolder rule)."""
    root = Path(folder)
    images, skipped = list_images(root, what)
    loose = [p for p in images if p.parent == root]
    if loose:
        raise InputError(f"{what} needs one sub-folder per class; {loose[0].name} lies directly in {root}")
    classes = sorted({p.relative_to(root).parts[0] for p in images})
    index = {c: i for i, c in enumerate(classes)}
    chosen = _sample(images, n, seed)
    x = np.stack([load_image(p, pp) for p in chosen])
    labels = np.array([index[p.relative_to(root).parts[0]] for p in chosen], dtype=np.int64)
    return ImageSet(x=x, files=[str(p.relative_to(root)) for p in chosen], folder=str(root), found=len(images),
                    skipped=skipped, labels=labels, classes=classes)


def synthetic(shape: tuple[int, ...], n: int, seed: int = 0) -> ImageSet:
    """``n`` seeded standard-normal inputs of ``shape`` (C x H x W): a smoke test, not calibration data."""
    from deploykit.onnxio.reference import make_input

    x = make_input((n, *shape), seed=10_000 + seed)
    return ImageSet(x=x, files=[f"synthetic-{i}" for i in range(n)], folder=SYNTHETIC, found=n, skipped=0)


def refuse_overlap(held_out: ImageSet, calib_digests: list[str] | None, *, what: str = "--eval-data") -> None:
    """An ``InputError`` when images of ``held_out`` are among the calibration images (by their digests): accuracy
    measured on images the int8 ranges were fitted to is not a held-out accuracy."""
    if not isinstance(calib_digests, list) or not calib_digests:  # none recorded (or not a list: none usable)
        return
    seen = {d for d in calib_digests if isinstance(d, str)}
    shared = [f for f, d in zip(held_out.files, held_out.digests()) if d in seen]
    if shared:
        raise InputError(f"{what}: {len(shared)} of its {len(held_out.files)} images calibrated this int8 model "
                         f"(e.g. {shared[0]}); evaluate on images the calibration never saw (e.g. the val split)")
