"""Architectures from timm (random seeded init; pretrained=False, no hub access)."""

from typing import Any

from deploykit.models.registry import register_model
from deploykit.models.traits import VIT_TRAITS


def _timm(arch: str, **kwargs):
    import timm

    return timm.create_model(arch, pretrained=False, **kwargs)


_VIT: dict[str, Any] = dict(family="vit", traits=VIT_TRAITS, source="timm", mean=(0.485, 0.456, 0.406),
                            std=(0.229, 0.224, 0.225))


@register_model("deit_tiny", arch="deit_tiny_patch16_224", resolution_multiple=16, description="DeiT-Ti/16", **_VIT)
def deit_tiny(resolution):
    return _timm("deit_tiny_patch16_224", img_size=resolution)


@register_model("deit_small", arch="deit_small_patch16_224", resolution_multiple=16, description="DeiT-S/16", **_VIT)
def deit_small(resolution):
    return _timm("deit_small_patch16_224", img_size=resolution)


@register_model("swin_tiny", arch="swin_tiny_patch4_window7_224", resolution_multiple=32, min_resolution=64,
                description="Swin-T (window 7)", **_VIT)
def swin_tiny(resolution):
    return _timm("swin_tiny_patch4_window7_224", img_size=resolution)


@register_model("mobilevit_s", arch="mobilevit_s", resolution_multiple=32, min_resolution=64,
                description="MobileViT-S", family="vit", traits=VIT_TRAITS, source="timm", mean=(0.0, 0.0, 0.0),
                std=(1.0, 1.0, 1.0))
def mobilevit_s(resolution):
    return _timm("mobilevit_s")
