"""VanillaNet-6 (Chen et al., "VanillaNet: the Power of Minimalism in Deep Learning", NeurIPS 2023).

A plain CNN with no shortcuts: a 4x4 stride-4 stem, then one "layer" per stage (a 1x1 conv, a max-pool for
stride 2, an activation), global average pooling and a 1x1 classifier. Two training-time devices are fused
away for deployment, and ``form=deploy`` (the default) is that fused network:

* the *series informed activation* is ReLU followed by a depthwise 7x7 conv and a BatchNorm; at deploy time
  the BN folds into the depthwise conv (weight x gamma/std, bias beta - mean x gamma/std);
* each layer trains as two 1x1 convs (+BN each) with a leaky ReLU between whose slope anneals to 1
  ("deep training"); with the slope at 1 the two convs are one linear map and merge into a single 1x1
  conv (W = W2 W1, b = W2 b1 + b2), likewise the stem (4x4 conv then 1x1) and the classifier.

The builder makes the training form (slope 1, the end of training) and fuses it with ``switch_to_deploy``,
so the deploy network is exactly the function of the trained one; ``form=train`` keeps the unfused network
(for comparing the two). Dims 512/1024/2048/4096/4096, strides 2/2/2/1: 32.5M parameters and 6.0 GMACs at
224 in deploy form, as published.

Random initialisation is variance preserving (kaiming normal, zero bias) rather than the authors'
trunc-normal(0.02): with no shortcut and no normalisation left after fusion, the authors' init makes the
logits of an untrained network ~1e-8, a poor input for fidelity and int8 checks.
"""

from __future__ import annotations

from deploykit.models.registry import register_model
from deploykit.models.traits import CNN_TRAITS


def _classes():
    import torch
    import torch.nn.functional as F
    from torch import nn

    def fuse_bn(weight, bias, bn):
        """(weight, bias) of a conv followed by ``bn`` (eval statistics), as one conv."""
        std = (bn.running_var + bn.eps).sqrt()
        t = bn.weight / std
        b = bias if bias is not None else torch.zeros_like(bn.running_mean)
        return weight * t.reshape(-1, 1, 1, 1), bn.bias + (b - bn.running_mean) * t

    def merge_1x1(w1, b1, w2, b2):
        """conv(w2, b2) after conv(w1, b1) where w2 is 1x1: one conv with w1's kernel size."""
        m = w2.flatten(1)  # O x I
        return torch.einsum("oi,icjk->ocjk", m, w1), b2 + m @ b1

    class SeriesActivation(nn.Module):
        """ReLU, then a depthwise (2 act_num + 1)^2 conv; a BN after it in the training form."""

        def __init__(self, dim, act_num=3):
            super().__init__()
            k = 2 * act_num + 1
            self.dim, self.pad = dim, k // 2
            self.weight = nn.Parameter(torch.empty(dim, 1, k, k))
            self.bias = None
            self.bn = nn.BatchNorm2d(dim, eps=1e-6)
            self.deploy = False

        def forward(self, x):
            y = F.conv2d(F.relu(x), self.weight, self.bias, padding=self.pad, groups=self.dim)
            return y if self.deploy else self.bn(y)

        @torch.no_grad()
        def switch_to_deploy(self):
            w, b = fuse_bn(self.weight, None, self.bn)
            self.weight = nn.Parameter(w)
            self.bias = nn.Parameter(b)
            del self.bn
            self.deploy = True

    class Layer(nn.Module):
        """One VanillaNet layer: 1x1 conv(s), max-pool (stride 2) and the series activation."""

        def __init__(self, dim, dim_out, stride, act_num=3):
            super().__init__()
            self.conv1 = nn.Sequential(nn.Conv2d(dim, dim, 1), nn.BatchNorm2d(dim, eps=1e-6))
            self.conv2 = nn.Sequential(nn.Conv2d(dim, dim_out, 1), nn.BatchNorm2d(dim_out, eps=1e-6))
            self.conv = None
            self.pool = nn.MaxPool2d(stride) if stride > 1 else nn.Identity()
            self.act = SeriesActivation(dim_out, act_num)
            self.act_learn = 1.0

        def forward(self, x):
            if self.conv is not None:
                x = self.conv(x)
            else:
                x = self.conv2(F.leaky_relu(self.conv1(x), self.act_learn))
            return self.act(self.pool(x))

        @torch.no_grad()
        def switch_to_deploy(self):
            if self.act_learn != 1.0:
                raise ValueError("the two 1x1 convs only merge once the leaky ReLU slope is 1")
            w1, b1 = fuse_bn(self.conv1[0].weight, self.conv1[0].bias, self.conv1[1])
            w2, b2 = fuse_bn(self.conv2[0].weight, self.conv2[0].bias, self.conv2[1])
            w, b = merge_1x1(w1, b1, w2, b2)
            self.conv = nn.Conv2d(w.shape[1], w.shape[0], 1, device=w.device, dtype=w.dtype)
            self.conv.weight.copy_(w)
            self.conv.bias.copy_(b)
            del self.conv1, self.conv2
            self.act.switch_to_deploy()

    class VanillaNet(nn.Module):
        def __init__(self, dims, strides, num_classes=1000, act_num=3):
            super().__init__()
            self.stem1 = nn.Sequential(nn.Conv2d(3, dims[0], 4, stride=4), nn.BatchNorm2d(dims[0], eps=1e-6))
            self.stem2 = nn.Sequential(nn.Conv2d(dims[0], dims[0], 1), nn.BatchNorm2d(dims[0], eps=1e-6))
            self.stem = None
            self.stem_act = SeriesActivation(dims[0], act_num)
            self.stages = nn.ModuleList(Layer(dims[i], dims[i + 1], s, act_num) for i, s in enumerate(strides))
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.cls1 = nn.Sequential(nn.Conv2d(dims[-1], num_classes, 1), nn.BatchNorm2d(num_classes, eps=1e-6))
            self.cls2 = nn.Conv2d(num_classes, num_classes, 1)
            self.cls = None
            self.act_learn = 1.0
            for m in self.modules():
                if isinstance(m, nn.Conv2d) and not m.weight.is_meta:
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                    nn.init.zeros_(m.bias)
                elif isinstance(m, SeriesActivation) and not m.weight.is_meta:
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")

        @property
        def deploy(self) -> bool:
            return self.stem is not None

        def forward(self, x):
            if self.deploy:
                x = self.stem(x)
            else:
                x = self.stem2(F.leaky_relu(self.stem1(x), self.act_learn))
            x = self.stem_act(x)
            for stage in self.stages:
                x = stage(x)
            x = self.pool(x)
            if self.deploy:
                x = self.cls(x)
            else:
                x = self.cls2(F.leaky_relu(self.cls1(x), self.act_learn))
            return x.flatten(1)

        @torch.no_grad()
        def switch_to_deploy(self):
            """Fuse BNs into convs and merge each pair of 1x1 convs (needs the leaky slope at 1)."""
            if self.deploy:
                return self
            w1, b1 = fuse_bn(self.stem1[0].weight, self.stem1[0].bias, self.stem1[1])
            w2, b2 = fuse_bn(self.stem2[0].weight, self.stem2[0].bias, self.stem2[1])
            w, b = merge_1x1(w1, b1, w2, b2)
            self.stem = nn.Conv2d(3, w.shape[0], 4, stride=4, device=w.device, dtype=w.dtype)
            self.stem.weight.copy_(w)
            self.stem.bias.copy_(b)
            del self.stem1, self.stem2
            self.stem_act.switch_to_deploy()
            for stage in self.stages:
                stage.switch_to_deploy()
            w1, b1 = fuse_bn(self.cls1[0].weight, self.cls1[0].bias, self.cls1[1])
            w, b = merge_1x1(w1, b1, self.cls2.weight, self.cls2.bias)
            self.cls = nn.Conv2d(w.shape[1], w.shape[0], 1, device=w.device, dtype=w.dtype)
            self.cls.weight.copy_(w)
            self.cls.bias.copy_(b)
            del self.cls1, self.cls2
            return self

    return VanillaNet


def build_vanillanet(dims, strides, form: str = "deploy"):
    model = _classes()(dims, strides)
    if form == "deploy":
        model.switch_to_deploy()
    return model


@register_model("vanillanet_6", family="cnn", traits=CNN_TRAITS, source="deploykit",
                arch="VanillaNet-6 (512/1024/2048/4096/4096)",
                options=(("form", ("deploy", "train")),), published=(("params_m", 32.5), ("gmacs", 6.0)),
                description="VanillaNet-6, plain CNN with no shortcuts, BN and 1x1 pairs fused for deployment")
def vanillanet_6(resolution, form="deploy"):
    return build_vanillanet([512, 1024, 2048, 4096, 4096], [2, 2, 2, 1], form)
