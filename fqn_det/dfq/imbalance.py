"""A function-preserving re-parameterization that unbalances channel ranges (for DFQ experiments).

BN folding gives the channels of one layer very different weight ranges in
networks such as MobileNetV2 (Nagel et al., sec. 3), which per-tensor
quantization cannot represent. Detectors trained from scratch here are well
balanced, so to reproduce that situation on them, exactly and without changing
the float function, every ResNet BasicBlock/Bottleneck ``bn1`` output channel i
is scaled by s_i and the next conv's input channel i by 1/s_i (ReLU is
positively homogeneous: relu(s x) = s relu(x) for s > 0).
"""
from __future__ import annotations

import math
from typing import Dict

import torch
from torch import Tensor


def unbalance_channels(state_dict: Dict[str, Tensor], spread: float, seed: int = 0,
                       prefix: str = 'backbone.layer') -> int:
    """Rescale in place with s_i log-uniform in [1/spread, spread]; returns the blocks changed.

    Works on an mmdet ResNet checkpoint's ``state_dict`` (keys ``<block>.bn1.*``,
    ``<block>.conv2.weight``).
    """
    if spread < 1:
        raise ValueError(f'spread must be >= 1, got {spread}')
    g = torch.Generator().manual_seed(seed)
    blocks = sorted({k.rsplit('.bn1.', 1)[0] for k in state_dict if k.startswith(prefix) and '.bn1.' in k})
    for b in blocks:
        n = state_dict[f'{b}.bn1.weight'].numel()
        s = torch.exp((torch.rand(n, generator=g) * 2 - 1) * math.log(spread))
        state_dict[f'{b}.bn1.weight'] = state_dict[f'{b}.bn1.weight'] * s
        state_dict[f'{b}.bn1.bias'] = state_dict[f'{b}.bn1.bias'] * s
        state_dict[f'{b}.conv2.weight'] = state_dict[f'{b}.conv2.weight'] / s.view(1, -1, 1, 1)
    return len(blocks)
