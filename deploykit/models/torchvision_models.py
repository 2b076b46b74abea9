"""Architectures from torchvision (random seeded init; no download)."""

from typing import Any

from deploykit.models.registry import register_model
from deploykit.models.traits import CNN_TRAITS, VIT_TRAITS

_CNN: dict[str, Any] = dict(family="cnn", traits=CNN_TRAITS, source="torchvision")


def _tv(arch: str, **kwargs):
    import torchvision

    return getattr(torchvision.models, arch)(weights=None, **kwargs)


@register_model("resnet18", **_CNN, arch="resnet18", description="ResNet-18")
def resnet18(resolution):
    return _tv("resnet18")


@register_model("resnet50", **_CNN, arch="resnet50", description="ResNet-50")
def resnet50(resolution):
    return _tv("resnet50")


@register_model("mobilenet_v2", **_CNN, arch="mobilenet_v2", description="MobileNetV2 1.0")
def mobilenet_v2(resolution):
    return _tv("mobilenet_v2")


@register_model("mobilenet_v3_large", **_CNN, arch="mobilenet_v3_large",
                description="MobileNetV3-Large")
def mobilenet_v3_large(resolution):
    return _tv("mobilenet_v3_large")


@register_model("convnext_tiny", **_CNN, arch="convnext_tiny", description="ConvNeXt-T")
def convnext_tiny(resolution):
    return _tv("convnext_tiny")


@register_model("efficientnet_b0", **_CNN, arch="efficientnet_b0",
                description="EfficientNet-B0")
def efficientnet_b0(resolution):
    return _tv("efficientnet_b0")


@register_model("vit_b_16", family="vit", traits=VIT_TRAITS, source="torchvision", arch="vit_b_16",
                resolution_multiple=16, description="ViT-B/16 (head re-initialised: torchvision zero-inits it)")
def vit_b_16(resolution):
    return _tv("vit_b_16", image_size=resolution)
