"""Model registry: ``register_model`` / ``create_model`` / ``list_models`` and each model's cfg.

Registering a model is one decorated builder in one file; the builder imports torch/timm lazily so that
listing names never imports them. Builders receive the input resolution and the model's options and return
an ``nn.Module`` with the real architecture; weights are random (seeded) unless ``weights=`` is given.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from deploykit.core.errors import InputError, UsageError
from deploykit.core.registry import Registry

FAMILIES = ("cnn", "vit", "parc")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelCfg:
    name: str
    family: str
    builder: Callable[..., Any] = field(repr=False, compare=False)
    resolution: int = 224
    channels: int = 3
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    num_classes: int = 1000
    source: str = ""  # where the architecture comes from: torchvision / timm / deploykit
    arch: str = ""  # upstream architecture name
    resolution_multiple: int = 1  # the input side must be a multiple of this
    min_resolution: int = 32
    options: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (option name, allowed values); first is default
    published: tuple[tuple[str, float], ...] = ()  # published figures, e.g. (("params_m", 7.4),)
    description: str = ""

    def input_shape(self, batch: int = 1, resolution: int | None = None) -> tuple[int, int, int, int]:
        r = resolution or self.resolution
        return (batch, self.channels, r, r)

    def option_defaults(self) -> dict[str, str]:
        return {k: v[0] for k, v in self.options}


def _load_zoo() -> None:
    # importing these modules registers their models (builders stay lazy)
    from deploykit.models import torchvision_models  # noqa: F401  (CNNs first in listings)
    from deploykit.models import timm_models  # noqa: F401

    from deploykit.models import parc_models  # noqa: F401  (the ParC family beside its plain counterparts)
    from deploykit.models import vanillanet  # noqa: F401


MODELS: Registry[ModelCfg] = Registry("model", loader=_load_zoo)


def register_model(name: str, *, family: str, **cfg: Any) -> Callable:
    """Decorator: register ``builder(resolution, **options) -> nn.Module`` under ``name``."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, not {family!r}")

    def deco(builder: Callable) -> Callable:
        MODELS.add(name, ModelCfg(name=name, family=family, builder=builder, **cfg))
        return builder

    return deco


def get_cfg(name: str) -> ModelCfg:
    return MODELS.get(name)


def list_models(family: str | None = None) -> list[ModelCfg]:
    cfgs = [cfg for _, cfg in MODELS.items()]
    return [c for c in cfgs if family is None or c.family == family]


def check_resolution(cfg: ModelCfg, resolution: int | None) -> int:
    r = cfg.resolution if resolution is None else int(resolution)
    if r < cfg.min_resolution:
        raise UsageError(f"{cfg.name} needs a resolution of at least {cfg.min_resolution}, got {r}")
    if r % cfg.resolution_multiple:
        raise UsageError(f"{cfg.name} needs a resolution that is a multiple of {cfg.resolution_multiple}, got {r}")
    return r


def resolve_options(cfg: ModelCfg, options: dict[str, Any] | None) -> dict[str, str]:
    out = cfg.option_defaults()
    allowed = dict(cfg.options)
    for k, v in (options or {}).items():
        if v is None:
            continue
        if k not in allowed:
            raise UsageError(f"{cfg.name} has no option {k!r}" + (f" (it has: {', '.join(allowed)})" if allowed else ""))
        if str(v) not in allowed[k]:
            raise UsageError(f"{cfg.name}: {k} must be one of {', '.join(allowed[k])}, got {v!r}")
        out[k] = str(v)
    return out


def create_model(
    name: str,
    *,
    resolution: int | None = None,
    seed: int = 0,
    weights: str | Path | None = None,
    options: dict[str, Any] | None = None,
    device: str | None = None,
):
    """Build ``name`` in eval mode: seeded random init, or a user's checkpoint when ``weights`` is given."""
    import torch

    cfg = get_cfg(name)
    r = check_resolution(cfg, resolution)
    opts = resolve_options(cfg, options)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if device:
            with torch.device(device):
                model = cfg.builder(r, **opts)
        else:
            model = cfg.builder(r, **opts)
            _reinit_zero_heads(model, seed)
    if weights is not None:
        load_weights(model, weights)
    return model.eval()


def _reinit_zero_heads(model, seed: int) -> None:
    """Random-init any all-zero Linear weight (torchvision's ViT zero-inits its head, which makes every
    output 0 and any fidelity check pass vacuously)."""
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.Linear) and not mod.weight.is_meta and not torch.any(mod.weight):
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=gen) * 0.02)


def load_weights(model, path: str | Path) -> None:
    """Load a user's checkpoint with ``torch.load(weights_only=True)``; clean errors for every failure."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise InputError(f"weights file not found: {p}")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # garbage input makes the unpickler raise almost any exception type
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read weights {p}: {first}") from None
    if isinstance(state, dict):
        for key in ("state_dict", "model", "model_state_dict", "ema"):
            if key in state and isinstance(state[key], dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(hasattr(v, "shape") for v in state.values()):
        raise InputError(f"weights {p} is not a state_dict of tensors")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} with wrong shape (e.g. {k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)})")
        raise InputError(f"weights {p} do not fit {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)


def source_sha256(cfg: ModelCfg) -> str | None:
    """SHA-256 of the code that builds ``cfg``'s model: its builder's module, this registry (seeded
    initialisation) and ``models/layers``. Part of an export's identity, so an artifact exported by other model
    code (an upgrade, a fix to a builder) is rebuilt instead of reused. None when the source cannot be read."""
    import inspect

    try:
        builder_file = Path(inspect.getsourcefile(cfg.builder) or "")
    except TypeError:
        return None
    here = Path(__file__).resolve()
    files = {builder_file.resolve(), here, *(here.parent / "layers").glob("*.py")}
    h = hashlib.sha256()
    for f in sorted(files):
        if not f.is_file():
            return None
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def model_stats(name: str, resolution: int | None = None, options: dict[str, Any] | None = None,
                cache_dir: Path | None = None) -> dict[str, float]:
    """Parameter count and MACs (conv/linear/matmul/attention, as torch's FlopCounterMode counts them / 2)
    at ``resolution``, computed on the meta device (no memory, no weights). Cached per versions."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    cfg = get_cfg(name)
    r = check_resolution(cfg, resolution)
    opts = resolve_options(cfg, options)
    key = json.dumps([name, r, sorted(opts.items()), _versions_key()])
    cache = _load_stats_cache(cache_dir)
    if key in cache:
        return cache[key]
    model = create_model(name, resolution=r, options=opts, device="meta")
    params = sum(p.numel() for p in model.parameters())
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.empty(cfg.input_shape(1, r), device="meta"))
    stats = {"params": int(params), "macs": int(counter.get_total_flops() // 2)}
    cache[key] = stats
    _save_stats_cache(cache_dir, cache)
    return stats


def _versions_key() -> str:
    from deploykit import __version__
    from deploykit.core.lazy import version_of

    return f"dk{__version__}-torch{version_of('torch')}-tv{version_of('torchvision')}-timm{version_of('timm')}"


def _stats_path(cache_dir: Path | None) -> Path | None:
    return Path(cache_dir) / ".cache" / "model-stats.json" if cache_dir else None


def _load_stats_cache(cache_dir: Path | None) -> dict:
    p = _stats_path(cache_dir)
    if p and p.is_file():
        try:
            return json.loads(p.read_text())
        except (OSError, ValueError):
            return {}
    return {}


def _save_stats_cache(cache_dir: Path | None, cache: dict) -> None:
    p = _stats_path(cache_dir)
    if not p:
        return
    from deploykit.core.atomic import write_json

    try:
        write_json(p, cache)
    except Exception:  # a cache that cannot be written is not an error
        pass
