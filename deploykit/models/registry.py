"""Model registry: ``register_model`` / ``create_model`` / ``list_models`` and each model's cfg.

Registering a model is one decorated builder in one file (a module imported by ``deploykit/models/__init__.py``);
the builder imports torch/timm lazily so that listing names never imports them. Builders receive the input
resolution and the model's options and return an ``nn.Module`` with the real architecture; weights are random
(seeded) unless ``weights=`` (a checkpoint) or ``pretrained=True`` (a pass-through model's published weights, from
the local cache) is given.

Each model declares its ``traits`` (``models.traits``: attention blocks, int8 recipe); its ``family`` is a label for
listings and reports. ``timm:NAME`` and ``tv:NAME`` are resolved on demand (``models.passthrough``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from deploykit.core.errors import InputError, UsageError
from deploykit.core.registry import Registry
from deploykit.models.traits import ModelTraits, get_recipe

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


@dataclass(frozen=True)
class PretrainedSource:
    """A model's published weights: where its library keeps them and how it loads them (pass-through models).
    Nothing is ever downloaded: ``locate`` finds the file in the local cache or raises an InputError that says
    where it looked."""

    what: str  # e.g. "torchvision MobileNet_V3_Small_Weights.IMAGENET1K_V1", "timm resnet10t.c3_in1k"
    locate: Callable[[], Path] = field(repr=False, compare=False)
    build: Callable[[int, Path], Any] = field(repr=False, compare=False)  # (resolution, file) -> nn.Module


@dataclass(frozen=True)
class ModelCfg:
    name: str
    family: str | None  # display/report label (cnn, vit, parc, ...); None when unknown (pass-through models)
    traits: ModelTraits | None  # what quantization needs; None = unknown, inferred from the exported graph
    builder: Callable[..., Any] = field(repr=False, compare=False)
    resolution: int = 224
    channels: int = 3
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    crop_pct: float | None = None  # preprocessing: resize to resolution / crop_pct, center-crop (None: the default)
    interpolation: str = "bilinear"
    num_classes: int = 1000
    source: str = ""  # where the architecture comes from: torchvision / timm / deploykit
    arch: str = ""  # upstream architecture name
    resolution_multiple: int = 1  # the input side must be a multiple of this
    min_resolution: int = 32
    options: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (option name, allowed values); first is default
    published: tuple[tuple[str, float], ...] = ()  # published figures, e.g. (("params_m", 7.4),)
    description: str = ""
    pretrained: PretrainedSource | None = None  # published weights (--pretrained); None: none known

    def input_shape(self, batch: int = 1, resolution: int | None = None) -> tuple[int, int, int, int]:
        r = resolution or self.resolution
        return (batch, self.channels, r, r)

    def option_defaults(self) -> dict[str, str]:
        return {k: v[0] for k, v in self.options}

    def preprocess(self) -> dict:
        """What the manifest records about the inputs the model expects."""
        return {"mean": list(self.mean), "std": list(self.std), "crop_pct": self.crop_pct,
                "interpolation": self.interpolation, "num_classes": self.num_classes}


MODELS: Registry[ModelCfg] = Registry("model")


@dataclass(frozen=True)
class ModelOption:
    """A model option a family declares (``parc_impl``): its values, how the command line spells it, and how a study
    report names and compares it. Every command takes it as ``--model-opt NAME=VALUE``; ``flag`` adds a convenient
    alias (``--parc-impl``); a sweep or a gate file takes NAME as a key; the study report compares the values of
    every declared option measured at the same settings (``label``: what one value is, in words)."""

    name: str
    choices: tuple[str, ...]
    help: str = ""
    flag: str | None = None
    label: str = ""  # e.g. "ParC implementation"
    family: str = ""  # the family that declares it (``deploykit models --family``)
    watch: str | None = None  # a value the study report says plainly whether it is ever the fastest (e.g. fft)


MODEL_OPTIONS: Registry[ModelOption] = Registry("model option")


def declare_model_option(option: ModelOption) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Declare a model option (once, in its family's module); returns the ``options`` a ``register_model`` takes
    for models that have it (its values, the first the default)."""
    MODEL_OPTIONS.add(option.name, option)
    return ((option.name, option.choices),)


def model_options_declared() -> list[ModelOption]:
    """Every declared model option, in declaration order."""
    return [o for _, o in MODEL_OPTIONS.items()]


def models_with_option(name: str) -> list[str]:
    """The registered models that take model option ``name``."""
    return [c.name for c in list_models() if name in dict(c.options)]


def register_model(name: str, *, family: str, traits: ModelTraits, **cfg: Any) -> Callable:
    """Decorator: register ``builder(resolution, **options) -> nn.Module`` under ``name``. ``traits`` must name a
    known int8 recipe (``models.traits.RECIPES``); ``family`` is a label."""
    if not isinstance(traits, ModelTraits):
        raise TypeError(f"model {name!r}: traits must be a ModelTraits, not {traits!r}")
    get_recipe(traits.recipe)  # an unknown recipe fails here, at import, not at quantization time
    if cfg.get("interpolation", "bilinear") not in INTERPOLATIONS:
        raise ValueError(f"model {name!r}: interpolation must be one of {INTERPOLATIONS}")

    def deco(builder: Callable) -> Callable:
        MODELS.add(name, ModelCfg(name=name, family=family, traits=traits, builder=builder, **cfg))
        return builder

    return deco


def get_cfg(name: str) -> ModelCfg:
    return MODELS.get(name)


def list_models(family: str | None = None) -> list[ModelCfg]:
    """The registered models (not the timm: / tv: pass-through), in registration order."""
    cfgs = [cfg for _, cfg in MODELS.items()]
    return [c for c in cfgs if family is None or c.family == family]


def families() -> list[str]:
    """The family labels of the registered models, in registration order."""
    return list(dict.fromkeys(c.family for c in list_models() if c.family))


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
            raise UsageError(f"{cfg.name} has no option {k!r}"
                             + (f" (it has: {', '.join(allowed)})" if allowed else ""))
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
    pretrained: bool = False,
):
    """Build ``name`` in eval mode: seeded random init, a user's checkpoint when ``weights`` is given, or the
    model's published weights from the local cache when ``pretrained`` (pass-through models; never downloads).

    A ``weights`` path that is the model's own cached published file (a manifest records it so) is loaded the way
    its library loads it, like ``pretrained``."""
    import torch

    cfg = get_cfg(name)
    r = check_resolution(cfg, resolution)
    opts = resolve_options(cfg, options)
    if pretrained and weights is not None:
        raise UsageError("--pretrained and --weights exclude each other (published weights or your checkpoint)")
    published = pretrained_file(cfg) if pretrained else _own_published_file(cfg, weights)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if device:
            if published is not None:
                raise UsageError(f"{name}: published weights are not loaded on the {device} device")
            with torch.device(device):
                model = cfg.builder(r, **opts)
        elif published is not None:
            assert cfg.pretrained is not None  # published weights are located by it
            model = cfg.pretrained.build(r, published)
        else:
            model = cfg.builder(r, **opts)
            _reinit_zero_heads(model, seed)
    if weights is not None and published is None:
        load_weights(model, weights)
    return model.eval()


def pretrained_file(cfg: ModelCfg) -> Path:
    """The cached file of ``cfg``'s published weights; InputError when the model has none or it is not cached."""
    if cfg.pretrained is None:
        raise UsageError(f"{cfg.name} has no published weights deploykit can load (--pretrained is for timm:NAME and "
                         "tv:NAME models); --weights FILE loads a checkpoint")
    return cfg.pretrained.locate()


def _own_published_file(cfg: ModelCfg, weights: str | Path | None) -> Path | None:
    if weights is None or cfg.pretrained is None:
        return None
    try:
        cached = cfg.pretrained.locate()
    except InputError:
        return None
    p = Path(weights)
    return cached if p.is_file() and p.resolve() == cached.resolve() else None


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
    _fit_head(model, state)  # a checkpoint trained for another number of classes (deploykit train) brings its head
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


def classifier_head(model) -> tuple[str, Any] | None:
    """(name, module) of the model's final classifier: its last ``nn.Linear`` (torchvision's ``fc`` /
    ``classifier.1``, timm's ``head`` / ``head.fc``), or None."""
    from torch import nn

    last = None
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            last = (name, mod)
    return last


def set_num_classes(model, n: int) -> None:
    """Replace the final classifier with one of ``n`` outputs (same input width; seeded by the caller's RNG)."""
    from torch import nn

    head = classifier_head(model)
    if head is None:
        raise UsageError(f"{type(model).__name__} has no final linear classifier to give {n} classes")
    name, lin = head
    if lin.out_features == n:
        return
    parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    setattr(parent, name.rpartition(".")[2], nn.Linear(lin.in_features, n, bias=lin.bias is not None))


def _fit_head(model, state: dict) -> None:
    """When a checkpoint's final classifier has another number of outputs than the model's (and the same input
    width), the model takes the checkpoint's number of classes: a model trained on 10 digits loads as a
    10-class model."""
    head = classifier_head(model)
    if head is None:
        return
    name, lin = head
    w = state.get(f"{name}.weight")
    if w is None or len(w.shape) != 2 or w.shape[1] != lin.in_features or w.shape[0] == lin.out_features:
        return
    set_num_classes(model, int(w.shape[0]))


def source_sha256(cfg: ModelCfg) -> str | None:
    """SHA-256 of the code that builds ``cfg``'s model: its builder's module, this registry (seeded
    initialisation) and ``models/layers``. Part of an export's identity, so an artifact exported by other model
    code (an upgrade, a fix to a builder) is rebuilt instead of reused. None when the source cannot be read."""
    import inspect

    builder = getattr(cfg.builder, "func", cfg.builder)  # a functools.partial: the function it calls
    try:
        builder_file = Path(inspect.getsourcefile(builder) or "")
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
                cache_dir: Path | None = None, progress=None) -> dict[str, int]:
    """Parameter count and MACs (conv/linear/matmul/attention, as torch's FlopCounterMode counts them / 2)
    at ``resolution``, computed on the meta device (no memory, no weights). Cached per versions; ``progress``
    (a callable taking a message) hears about each model that is not in the cache yet."""
    from deploykit.models import shipped_stats

    cfg = get_cfg(name)
    r = check_resolution(cfg, resolution)
    opts = resolve_options(cfg, options)
    shipped = shipped_stats.lookup(name, r, opts) if name in MODELS else None
    if shipped is not None:  # the default resolution and options: counted when deploykit was built
        return shipped
    key = json.dumps([name, r, sorted(opts.items()), _versions_key()])
    cache = _load_stats_cache(cache_dir)
    if key in cache:
        return cache[key]
    if progress is not None:
        progress(f"counting the parameters and MACs of {name} at {r} px (cached after this)")
    stats = count_stats(name, r, opts)
    cache[key] = stats
    _save_stats_cache(cache_dir, cache)
    return stats


def count_stats(name: str, resolution: int, options: dict[str, Any]) -> dict[str, int]:
    """Parameters and MACs of ``name`` counted now, on the meta device (no cache)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    cfg = get_cfg(name)
    model = create_model(name, resolution=resolution, options=options, device="meta")
    params = sum(p.numel() for p in model.parameters())
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.empty(cfg.input_shape(1, resolution), device="meta"))
    return {"params": int(params), "macs": int(counter.get_total_flops() // 2)}


def _versions_key() -> str:
    from deploykit import __version__
    from deploykit.core.lazy import version_of

    return f"dk{__version__}-torch{version_of('torch')}-tv{version_of('torchvision')}-timm{version_of('timm')}"


def _stats_path(cache_dir: Path | None) -> Path | None:
    return Path(cache_dir) / ".cache" / "model-stats.json" if cache_dir else None


_STATS_SCHEMA = {"type": "object", "additionalProperties": {
    "type": "object", "required": ["params", "macs"],
    "properties": {"params": {"type": "integer", "minimum": 0}, "macs": {"type": "integer", "minimum": 0}}}}


def _load_stats_cache(cache_dir: Path | None) -> dict:
    """The cached stats; a cache that cannot be read or does not fit its schema is absent (rebuilt)."""
    from deploykit.core.errors import InputError
    from deploykit.core.validate import read_json, valid

    p = _stats_path(cache_dir)
    if p and p.is_file():
        try:
            data = read_json(p, "model-stats cache")
        except InputError:
            return {}
        return data if valid(data, _STATS_SCHEMA) else {}
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


def compute_shipped_stats() -> dict:
    """Every registry model at its default resolution and options, counted now (no cache, no shipped table): the
    table ``models/shipped_stats.py`` ships."""
    from deploykit.models import shipped_stats

    out = {}
    for cfg in list_models():
        opts = resolve_options(cfg, None)
        out[shipped_stats.key(cfg.name, cfg.resolution, opts)] = count_stats(cfg.name, cfg.resolution, opts)
    return out


if __name__ == "__main__":  # python -m deploykit.models.registry: rewrite the shipped counts
    from deploykit.models import shipped_stats as _shipped

    _shipped.FILE.write_text(json.dumps(compute_shipped_stats(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {_shipped.FILE}")
