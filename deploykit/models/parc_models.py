"""The ParC family (ParC-Net, ECCV 2022; Fast-ParC, arXiv 2210.04020), each beside its plain counterpart.

Every ParC model is its plain counterpart's own code (torchvision / timm) with the spatial mixer of some
blocks swapped for ParC, so a pair differs only where the paper puts ParC:

============================  ==================  =================================================================
ParC model                    plain counterpart   what ParC replaces
============================  ==================  =================================================================
``parc_convnext_xt``          ``convnext_xt``     the 7x7 depthwise conv of the last 3 blocks of stage 3 and the last
                                                  block of stage 4 (half the channels ParC-H, half ParC-W; N = 14, 7)
``parc_resnet50``             ``resnet50``        the bottleneck's 3x3 conv in layer3 blocks 3-5 and layer4 block 2:
                                                  a dense (not depthwise) ParC-H | ParC-W on half the width each
``parc_mobilenet_v2``         ``mobilenet_v2``    the 3x3 depthwise conv of inverted residuals 9, 10 (64 ch, N=14),
                                                  13 (96 ch, N=14) and 16 (160 ch, N=7); embedding on 9, 13, 16 only
``parc_net_s``                ``mobilevit_s``     the MobileViT blocks (transformer) of stages 3-5: ParC-Net-S's
                                                  ParC meta-former blocks; stem, MV2 blocks and head are timm's
                                                  mobilevit_s modules, the same as in ``mobilevit_s``
============================  ==================  =================================================================

Kernel sizes are the published ones (the feature sizes at 224 x 224; 32/16/8 for ParC-Net-S, trained at
256); any other input resolution resizes kernels and embeddings per axis (see ``layers.parc``), so
``--weights`` checkpoints load at every resolution.

Random initialisation: the layer scale of the ConvNeXt-XT pair starts at 1.0 instead of the training value
1e-6, so that every block (ParC included) shapes the output and a fidelity check can see an error in any of
them; shapes, parameter counts and cost are unchanged, and a checkpoint's learned scales replace it.

The option ``parc_impl`` (conv | fft | matmul, default conv) picks the ParC implementation; it changes the
exported graph, never the weights or the function computed.
"""

from __future__ import annotations

from typing import Any

from deploykit.models.registry import ModelOption, declare_model_option, register_model
from deploykit.models.traits import CNN_TRAITS

PARC_IMPLS = ("conv", "fft", "matmul")
PARC_OPTION = declare_model_option(ModelOption(
    "parc_impl", PARC_IMPLS, flag="--parc-impl", label="ParC implementation", family="parc", watch="fft",
    help="ParC implementation for ParC models (the same as --model-opt parc_impl=...)."))
# ParC is convolution
_PARC: dict[str, Any] = dict(family="parc", traits=CNN_TRAITS, source="deploykit", options=PARC_OPTION)


# ----------------------------------------------------------------------------------------------- ConvNeXt-XT
def _convnext_xt(impl: str | None):
    from torch import nn
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt

    from deploykit.models.layers.parc import ParCHW

    dims, depths = (48, 96, 192, 384), (3, 3, 9, 3)
    setting = [CNBlockConfig(d, dims[i + 1] if i < 3 else None, n) for i, (d, n) in enumerate(zip(dims, depths))]
    model = ConvNeXt(setting, stochastic_depth_prob=0.0, layer_scale=1.0)
    if impl is not None:
        # stage 3 (features[5]): blocks 6-8 at 14 x 14; stage 4 (features[7]): block 2 at 7 x 7
        for feat, first, size in ((5, 6, 14), (7, 2, 7)):
            for block in list(model.features[feat])[first:]:
                dim = block.block[0].in_channels
                parc = ParCHW(dim, size, impl)
                for op in (parc.parc_h, parc.parc_w):
                    nn.init.trunc_normal_(op.weight, std=0.02)  # ConvNeXt's conv init (bias 0)
                    if op.bias is not None:
                        nn.init.zeros_(op.bias)
                block.block[0] = parc
    return model


@register_model("convnext_xt", family="cnn", traits=CNN_TRAITS, source="deploykit",
                arch="torchvision ConvNeXt (48/96/192/384, 3/3/9/3)",
                published=(("params_m", 7.44),), description="ConvNeXt-XT, the plain counterpart of ParC-ConvNeXt-XT")
def convnext_xt(resolution):
    return _convnext_xt(None)


@register_model("parc_convnext_xt", arch="ConvNeXt-XT + ParC (stage 3 blocks 6-8, stage 4 block 2)",
                published=(("params_m", 7.41),), description="ParC-ConvNeXt-XT", **_PARC)
def parc_convnext_xt(resolution, parc_impl="conv"):
    return _convnext_xt(parc_impl)


# ----------------------------------------------------------------------------------------------- ResNet-50
@register_model("parc_resnet50", arch="torchvision resnet50 + dense ParC (layer3 blocks 3-5, layer4 block 2)",
                published=(("params_m", 24.0),), description="ParC-ResNet50", **_PARC)
def parc_resnet50(resolution, parc_impl="conv"):
    import torchvision
    from torch import nn

    from deploykit.models.layers.norm import AffineBatchNorm2d
    from deploykit.models.layers.parc import ParCHW

    model = torchvision.models.resnet50(weights=None)
    for layer, first, size in ((model.layer3, 3, 14), (model.layer4, 2, 7)):
        for block in list(layer)[first:]:
            width = block.conv2.in_channels
            parc = ParCHW(width, size, parc_impl, dense=True)
            for op in (parc.parc_h, parc.parc_w):  # torchvision's conv init
                nn.init.kaiming_normal_(op.weight, mode="fan_out", nonlinearity="relu")
            block.conv2 = parc
            block.bn2 = AffineBatchNorm2d(width)  # after ParC's Concat: Mul + Add in ONNX (see layers.norm)
    return model


# ----------------------------------------------------------------------------------------------- MobileNetV2
@register_model("parc_mobilenet_v2", arch="torchvision mobilenet_v2 + ParC (blocks 9, 10, 13, 16)",
                description="ParC-MobileNetV2", **_PARC)
def parc_mobilenet_v2(resolution, parc_impl="conv"):
    import torchvision
    from torch import nn

    from deploykit.models.layers.norm import AffineBatchNorm2d
    from deploykit.models.layers.parc import ParCHW

    model = torchvision.models.mobilenet_v2(weights=None)
    # (feature index, ParC size, position embedding): as the reference, the embedding only on the first
    # ParC block of a stage
    for idx, size, pe in ((9, 14, True), (10, 14, False), (13, 14, True), (16, 7, True)):
        ir = model.features[idx]
        dw = ir.conv[1][0]  # the depthwise 3x3 conv of Conv2dNormActivation(dw, BN, ReLU6)
        hidden = dw.in_channels
        parc = ParCHW(hidden, size, parc_impl, use_pe=pe)
        for op in (parc.parc_h, parc.parc_w):
            nn.init.kaiming_normal_(op.weight, mode="fan_out")
            nn.init.zeros_(op.bias)
        ir.conv[1] = nn.Sequential(parc, AffineBatchNorm2d(hidden), nn.ReLU6(inplace=True))  # see layers.norm
    return model


# ----------------------------------------------------------------------------------------------- ParC-Net-S
# ParC-Net-S (the authors' "edgeformer" scale_s, outer_frame_v1, gcc_ca kernel): per stage the MobileViT
# block's channels, the ParC branch width, its FFN width, the number of ParC blocks and the meta kernel size.
_PARCNET_S = ((2, 96, 192, 384, 2, 32), (3, 128, 256, 512, 4, 16), (4, 160, 320, 640, 3, 8))


def _parcnet_classes():
    import math

    import torch
    from torch import nn

    from deploykit.models.layers.norm import AffineBatchNorm2d
    from deploykit.models.layers.parc import ParC

    def conv_bn_act(cin, cout, k, groups=1, act=True):
        layers = [nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        if act:
            layers.append(nn.SiLU(inplace=True))
        return nn.Sequential(*layers)

    class ChannelAttention(nn.Module):
        """Squeeze-excitation style channel attention (the "ca" of gcc_ca)."""

        def __init__(self, channels, reduction=16):
            super().__init__()
            mid = channels // reduction
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Sequential(nn.Conv2d(channels, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.Hardswish(),
                                    nn.Conv2d(mid, channels, 1, bias=False), nn.BatchNorm2d(channels),
                                    nn.Hardsigmoid())

        def forward(self, x):
            return x * self.fc(self.pool(x))

    class ParCMetaFormerBlock(nn.Module):
        """The ParC block that replaces a transformer block: two halves, each mixed globally along both axes
        (half 1: ParC-H then ParC-W, half 2: ParC-W then ParC-H) with a residual, then FFN + channel
        attention with a residual. Position embeddings (first block of a stage only) and no ParC bias, as
        the published ParC-Net-S."""

        def __init__(self, dim, ffn, size, impl, use_pe):
            super().__init__()
            # the BNs no conv precedes export as Mul + Add (see layers.norm)
            self.norm1, self.norm2 = AffineBatchNorm2d(dim), AffineBatchNorm2d(dim)
            kw = dict(use_pe=use_pe, bias=False)
            self.h1, self.w1 = ParC(dim, size, "H", impl, **kw), ParC(dim, size, "W", impl, **kw)
            self.w2, self.h2 = ParC(dim, size, "W", impl, **kw), ParC(dim, size, "H", impl, **kw)
            self.ffn = nn.Sequential(AffineBatchNorm2d(2 * dim), nn.Conv2d(2 * dim, ffn, 1), nn.Hardswish(),
                                     nn.Conv2d(ffn, 2 * dim, 1))
            self.ca = ChannelAttention(2 * dim)

        def forward(self, x):
            x1, x2 = torch.chunk(x, 2, dim=1)
            y1 = x1 + self.w2(self.h1(self.norm1(x1)))
            y2 = x2 + self.h2(self.w1(self.norm2(x2)))
            x = torch.cat((y1, y2), dim=1)
            return x + self.ca(self.ffn(x))

    class ParCNetBlock(nn.Module):
        """ParC-Net's replacement of a MobileViT block: local representation (grouped 3x3 + 1x1 to the ParC
        width), ParC meta-former blocks, BN, grouped 1x1 back, fusion 3x3 over [global, input]."""

        def __init__(self, channels, width, ffn, n_blocks, size, impl):
            super().__init__()
            g = math.gcd(width, channels)
            self.local = nn.Sequential(conv_bn_act(channels, width, 3, groups=g),
                                       nn.Conv2d(width, width, 1, bias=False))
            self.blocks = nn.Sequential(*[ParCMetaFormerBlock(width // 2, ffn, size, impl, use_pe=i == 0)
                                          for i in range(n_blocks)], AffineBatchNorm2d(width))
            self.proj = conv_bn_act(width, channels, 1, groups=g)
            self.fusion = conv_bn_act(2 * channels, channels, 3)

        def forward(self, x):
            y = self.proj(self.blocks(self.local(x)))
            return self.fusion(torch.cat((y, x), dim=1))

    return ParCNetBlock


@register_model("parc_net_s", arch="timm mobilevit_s skeleton + ParC-Net-S blocks (gcc_ca)", resolution_multiple=32,
                min_resolution=64, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), published=(("params_m", 5.0),),
                description="ParC-Net-S", **_PARC)
def parc_net_s(resolution, parc_impl="conv"):
    import timm
    from torch import nn

    block_cls = _parcnet_classes()
    model = timm.create_model("mobilevit_s", pretrained=False)
    for stage, channels, width, ffn, n_blocks, size in _PARCNET_S:
        block = block_cls(channels, width, ffn, n_blocks, size, parc_impl)
        for mod in block.modules():  # the authors' init for convs (kaiming normal); ParC keeps Conv2d's
            if isinstance(mod, nn.Conv2d) and not mod.weight.is_meta:
                nn.init.kaiming_normal_(mod.weight, mode="fan_out")
                if mod.bias is not None:
                    nn.init.zeros_(mod.bias)
        model.stages[stage][1] = block
    return model
