"""Any timm or torchvision classification model by name: ``timm:NAME`` and ``tv:NAME``.

``timm:convnext_small`` (or with a pretrained tag, ``timm:resnet10t.c3_in1k``) and ``tv:regnet_y_400mf`` (or with
a weights name, ``tv:resnet50.IMAGENET1K_V2``) resolve on demand to a ``ModelCfg`` built from the library's own
preprocessing config:

* timm: the pretrained cfg (``timm.models.get_pretrained_cfg``) through ``timm.data.resolve_data_config``:
  input size (the default resolution), mean, std, crop_pct, interpolation, num_classes; models with a fixed input
  size (ViTs) are built with ``img_size=`` at another resolution.
* torchvision: the weights enum (``torchvision.models.get_model_weights``, its DEFAULT unless named): the
  transforms' crop size (the default resolution), resize size (crop_pct = crop / resize), mean, std,
  interpolation, and the number of categories; torchvision ViTs are built with ``image_size=``.

Weights are random (seeded) by default. ``pretrained=True`` (``--pretrained``) loads the published weights the
way the library does, from its local cache only -- nothing is downloaded:

* torchvision: ``torch.hub.get_dir()/checkpoints/<file name of the weights URL>`` ($TORCH_HOME/hub/checkpoints),
  loaded by the model builder with ``weights=`` (which reads a cached file without downloading);
* timm: the Hugging Face hub cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ~/.cache/huggingface/hub:
  ``models--timm--<name>.<tag>/snapshots/<revision>/model.safetensors`` or ``pytorch_model.bin``), then torch
  hub's cache for the cfg's URL (timm's old cache); the file found is loaded by ``timm.create_model(pretrained=True,
  pretrained_cfg_overlay=dict(file=...))`` (timm's own loading: filters, pos-embed resizing).

Without the file it is a one-line error saying where it was looked for.

Traits are unknown (``traits=None``): ``quantize`` infers them from the exported graph (attention blocks ->
the ViT recipe, else the CNN recipe) and says so. The family label is left empty for the same reason.
"""

from __future__ import annotations

import difflib
import os
import threading
from functools import partial
from pathlib import Path
from typing import Any

from deploykit.core.errors import InputError, squash
from deploykit.models.registry import IMAGENET_MEAN, IMAGENET_STD, INTERPOLATIONS, MODELS, ModelCfg, PretrainedSource

TIMM, TV = "timm", "tv"
_TV_LOADER_LOCK = threading.Lock()


def _unknown(prefix: str, name: str, known: list[str], lister: str) -> InputError:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = "; did you mean " + ", ".join(repr(f"{prefix}:{c}") for c in close) + "?" if close else ""
    kind = "torchvision" if prefix == TV else prefix
    ref = f"{prefix}:{name}"
    return InputError(f"unknown {kind} model {ref!r}{hint} ({lister} lists them)")


def _interpolation(value: str, where: str) -> str:
    v = str(value).lower()
    if v not in INTERPOLATIONS:
        raise InputError(f"{where}: interpolation {value!r} is not one deploykit preprocesses with "
                         f"({', '.join(INTERPOLATIONS)})")
    return v


def _build_error(where: str, resolution: int, exc: Exception) -> InputError:
    return InputError(f"cannot build {where} at resolution {resolution}: {type(exc).__name__}: "
                      f"{squash(exc, 240) or type(exc).__name__}")


# ------------------------------------------------------------------------------------------- cached checkpoints
# torch.hub's rule for the hash in a published file's name (``resnet18-f37072fd.pth``: the first hex digits of the
# file's SHA-256), checked by torch only when it downloads
_HASH_IN_NAME = r"-([a-f0-9]{6,})\."


def verify_hash_prefix(file: Path, what: str) -> None:
    """Refuse a cached weights file whose name carries a SHA-256 prefix its content does not have: it is not the
    published file (a corrupt or substituted one), and is never labelled as the published weights."""
    import re

    from deploykit.core.hashing import file_sha256

    m = re.search(_HASH_IN_NAME, Path(file).name)
    if m is None:
        return
    digest = file_sha256(file)
    if not digest.startswith(m.group(1)):
        raise InputError(f"{what}: the cached file {file} does not match the SHA-256 prefix in its name ({m.group(1)}; "
                         f"its content hashes to {digest[:len(m.group(1))]}): not the published weights; delete it and "
                         "copy the published file there")


def load_checkpoint(file: Path, what: str) -> dict:
    """The state dict in a cached weights file, loaded without running any code it holds: the hash prefix in its
    name verified, ``.safetensors`` through safetensors, anything else through ``torch.load(weights_only=True)``
    (a pickle that names anything but tensors and plain containers is refused, one line). torchvision's own loader
    uses ``weights_only=False``: a malicious pickle in $TORCH_HOME/hub/checkpoints would run."""
    import pickle
    import re
    import warnings

    import torch

    from deploykit.core.guarded import open_regular

    state: Any
    os.close(open_regular(file, what=f"{what} weights file", follow=True))  # a regular file: no FIFO, no device
    verify_hash_prefix(file, what)
    try:
        if str(file).endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(str(file), device="cpu")
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch's note on the pickle protocol
                state = torch.load(file, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, ValueError, EOFError, OSError, AttributeError, TypeError) as exc:
        detail = re.search(r"WeightsUnpickler error:\s*(.+?)(\n\n|$)", str(exc), re.S)
        why = squash(detail.group(1) if detail else str(exc).split(". ")[0], 160)
        raise InputError(f"{what}: the cached weights file {file} is refused: it is not plain weights ({why}); "
                         "nothing in it was run") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise InputError(f"{what}: the cached weights file {file} holds a {type(state).__name__}, not a state dict")
    return state


# ------------------------------------------------------------------------------------------------- torchvision
def _tv_names() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _tv_patch(arch: str) -> int:
    """The patch size of a torchvision ViT (vit_b_16 -> 16), 1 for other models."""
    tail = arch.rsplit("_", 1)[-1]
    return int(tail) if arch.startswith("vit_") and tail.isdigit() else 1


def _tv_build(arch: str, resolution: int, weights=None):
    import torchvision

    kwargs = {"image_size": resolution} if arch.startswith("vit_") else {}
    try:
        return torchvision.models.get_model(arch, weights=weights, **kwargs)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise _build_error(f"tv:{arch}" + (f" with {weights}" if weights is not None else ""), resolution,
                           exc) from None


def _tv_cache_file(url: str) -> Path:
    import torch
    from urllib.parse import urlparse

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def _tv_locate(name: str, weights) -> Path:
    f = _tv_cache_file(weights.url)
    if f.is_file():
        return f
    raise InputError(f"tv:{name} --pretrained: {weights} is not in the local cache and deploykit downloads nothing: "
                     f"looked for {f} (torch.hub.get_dir()/checkpoints, i.e. $TORCH_HOME/hub/checkpoints); copy "
                     f"{weights.url} there")


def _tv_pretrained_build(arch: str, name: str, weights, resolution: int, file: Path):
    if Path(file).resolve() != _tv_cache_file(weights.url).resolve():
        raise InputError(f"tv:{name}: torchvision loads {weights} from {_tv_cache_file(weights.url)}, not {file}")
    # loaded here (hash verified, weights only), handed to torchvision's builder in place of its own loader, which
    # would unpickle the cached file with weights_only=False; the builder keeps its own handling of the weights
    # (the parameters it sets for them, key fixes such as densenet's)
    return tv_build_with_state(arch, name, weights, resolution, load_checkpoint(Path(file), f"tv:{name} --pretrained"))


def tv_build_with_state(arch: str, name: str, weights, resolution: int, state: dict):
    """torchvision's builder for ``weights``, given the state dict ``load_checkpoint`` read instead of reading the
    file itself."""
    import torchvision.models._api as tv_api

    def verified(url, *args, **kwargs):
        if url != weights.url:
            raise InputError(f"tv:{name}: torchvision asked for {url}, not {weights.url}")
        return state

    with _TV_LOADER_LOCK:
        original = tv_api.load_state_dict_from_url
        tv_api.load_state_dict_from_url = verified
        try:
            return _tv_build(arch, resolution, weights=weights)
        finally:
            tv_api.load_state_dict_from_url = original


def resolve_tv(name: str) -> ModelCfg:
    import torchvision  # noqa: F401  (the lookups below need it)
    from torchvision.models import get_model_weights

    arch, _, tag = name.partition(".")
    names = _tv_names()
    if arch not in names:
        raise _unknown(TV, arch, names, "torchvision.models.list_models()")
    enum = get_model_weights(arch)
    if tag:
        if tag not in enum.__members__:
            raise InputError(f"tv:{arch} has no weights {tag!r} (it has: {', '.join(enum.__members__)})")
        weights = enum[tag]
    else:
        weights = enum.DEFAULT
    t = weights.transforms()
    crop, resize = int(t.crop_size[0]), int(t.resize_size[0])
    patch = _tv_patch(arch)
    return ModelCfg(
        name=f"{TV}:{name}", family=None, traits=None, builder=partial(_tv_build, arch),
        resolution=crop, mean=tuple(t.mean), std=tuple(t.std), crop_pct=crop / resize,
        interpolation=_interpolation(t.interpolation.value, f"tv:{name}"),
        num_classes=len(weights.meta["categories"]), source="torchvision", arch=arch,
        resolution_multiple=patch, min_resolution=max(32, patch),
        description=f"torchvision {arch} (preprocessing of {weights})",
        pretrained=PretrainedSource(what=f"torchvision {weights}", locate=partial(_tv_locate, name, weights),
                                    build=partial(_tv_pretrained_build, arch, name, weights)),
    )


# ------------------------------------------------------------------------------------------------------- timm
def _timm_names() -> list[str]:
    import timm

    return timm.list_models()


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache as huggingface_hub resolves it (read from the environment now, not at import)."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(home).expanduser() / "hub"


def _hf_filenames(filename: str | None) -> list[str]:
    """The files timm asks the hub for, in its order (a safetensors alternative first)."""
    filename = filename or "pytorch_model.bin"
    if filename.endswith(".safetensors"):
        return [filename]
    alt = {"pytorch_model.bin": "model.safetensors", "open_clip_pytorch_model.bin": "open_clip_model.safetensors"}
    safe = alt.get(filename) or (filename[:-4] + ".safetensors" if filename.endswith(".bin") else None)
    return [f for f in (safe, filename) if f]


def _timm_locate(name: str, pcfg: dict) -> Path:
    looked = []
    candidates: list[tuple[str, object]] = []
    hub_id = pcfg.get("hf_hub_id")
    if hub_id:
        candidates.append(("hf", hub_id))
    if pcfg.get("url"):
        candidates.append(("url", pcfg["url"]))
    if os.environ.get("TIMM_USE_OLD_CACHE", "0") not in ("", "0"):
        candidates.sort(key=lambda c: c[0] != "url")  # timm then prefers its old (torch hub) cache
    for kind, where in candidates:
        if kind == "hf":
            repo, _, revision = str(where).partition("@")
            cache = hf_hub_cache()
            files = _hf_filenames(pcfg.get("hf_hub_filename"))
            try:
                from huggingface_hub import try_to_load_from_cache
            except ImportError:
                looked.append("the Hugging Face cache (huggingface_hub is not installed)")
                continue
            for fname in files:
                hit = try_to_load_from_cache(repo, fname, cache_dir=str(cache), revision=revision or None)
                if isinstance(hit, str) and Path(hit).is_file():
                    return Path(hit)
            looked.append(f"{cache}/models--{repo.replace('/', '--')}/snapshots/{revision or '<main>'}/"
                          f"{{{','.join(files)}}}")
        else:
            from urllib.parse import urlparse

            import torch

            f = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(str(where)).path)
            if f.is_file():
                return f
            looked.append(str(f))
    if not looked:
        raise InputError(f"timm:{name} has no published weights (its pretrained cfg names no file, hub id or URL)")
    raise InputError(f"timm:{name} --pretrained: the weights are not in the local cache and deploykit downloads "
                     f"nothing: looked for {' and '.join(looked)}")


def _timm_build(name: str, fixed_size: bool, default_resolution: int, resolution: int, file: Path | None = None):
    import timm

    kwargs: dict[str, Any] = {}
    if fixed_size and resolution != default_resolution:
        kwargs["img_size"] = resolution
    if file is not None:
        # checked first: the hash in its name, and that it loads as plain weights (timm then loads it with
        # weights_only=True itself; an older timm would not)
        load_checkpoint(Path(file), f"timm:{name} --pretrained")
        kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(file), "source": None})
    try:
        return timm.create_model(name, pretrained=kwargs.pop("pretrained", False), **kwargs)
    except (TypeError, ValueError, RuntimeError, AssertionError) as exc:
        where = f"timm:{name}" + (f" with weights {file}" if file is not None else "")
        raise _build_error(where, resolution, exc) from None


def resolve_timm(name: str) -> ModelCfg:
    import timm
    import timm.data
    from timm.models import get_pretrained_cfg, split_model_name_tag

    arch, tag = split_model_name_tag(name)
    if not timm.is_model(arch):
        raise _unknown(TIMM, arch, _timm_names(), "timm.list_models()")
    try:
        pcfg = get_pretrained_cfg(name)
    except RuntimeError:
        raise InputError(f"timm:{arch} has no pretrained tag {tag!r} (it has: "
                         f"{', '.join(timm.list_pretrained(arch + '.*')) or 'none'})") from None
    pdict = pcfg.to_dict() if pcfg is not None else {}
    data = timm.data.resolve_data_config({}, pretrained_cfg=pdict or {"input_size": (3, 224, 224)})
    channels, height, _ = data["input_size"]
    mean, std = tuple(data["mean"]), tuple(data["std"])
    if len(mean) != channels:
        mean, std = IMAGENET_MEAN[:channels], IMAGENET_STD[:channels]
    fixed = bool(pdict.get("fixed_input_size"))
    full = f"{arch}.{pcfg.tag}" if pcfg is not None and pcfg.tag else arch
    return ModelCfg(
        name=f"{TIMM}:{name}", family=None, traits=None, builder=partial(_timm_build, name, fixed, int(height)),
        resolution=int(height), channels=int(channels), mean=mean, std=std, crop_pct=float(data["crop_pct"]),
        interpolation=_interpolation(data["interpolation"], f"timm:{name}"),
        num_classes=int(pdict.get("num_classes") or 1000), source="timm", arch=full,
        description=f"timm {full}",
        pretrained=PretrainedSource(what=f"timm {full}", locate=partial(_timm_locate, name, pdict),
                                    build=partial(_timm_build, name, fixed, int(height))),
    )


MODELS.add_namespace(TIMM, resolve_timm, _timm_names)
MODELS.add_namespace(TV, resolve_tv, _tv_names)
