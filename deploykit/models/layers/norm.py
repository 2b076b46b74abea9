"""BatchNorm that exports, in eval mode, as an explicit Mul + Add instead of an ONNX BatchNormalization op.

Use it for a BatchNorm that no convolution precedes (so the exporter cannot fold it away), e.g. after a ParC
block that ends in a Concat: a per-channel Mul + Add is what every runtime fuses or quantizes well. History:
OpenVINO 2026.4's CPU plugin crashed (segmentation fault in compile_model) on an int8 QDQ graph with a
standalone BatchNormalization after a quantized Concat. The general trigger, found later, is a Concat's Q/DQ
with a non-zero zero point feeding a float Mul/Add by constants -- a Mul + Add hits it too, so
``deploykit quantize`` keeps such Concats float (``quantize.ort_qdq.float_concats``). The function, the
parameters and the state_dict keys are nn.BatchNorm2d's, so checkpoints load unchanged and training mode is
plain batch norm.
"""

from __future__ import annotations

import torch
from torch import nn


class AffineBatchNorm2d(nn.BatchNorm2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or not self.track_running_stats or self.running_mean is None or self.running_var is None:
            return super().forward(x)
        scale = torch.rsqrt(self.running_var + self.eps)
        shift = -self.running_mean * scale
        if self.affine:
            scale, shift = scale * self.weight, shift * self.weight + self.bias
        return x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)
