"""Gaussian activation statistics: clipped-normal moments of a ReLU (Nagel et al., appendix)."""
from __future__ import annotations

import math
from typing import Tuple

import torch
from torch import Tensor

_SQRT2 = math.sqrt(2.0)


def _pdf(z: Tensor) -> Tensor:
    return torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


def _cdf(z: Tensor) -> Tensor:
    return 0.5 * (1 + torch.erf(z / _SQRT2))


def relu_moments(mean: Tensor, std: Tensor) -> Tuple[Tensor, Tensor]:
    """Mean and variance of ``relu(y)`` for ``y ~ N(mean, std^2)`` (per channel)."""
    std = std.clamp(min=1e-12)
    z = mean / std
    m = std * _pdf(z) + mean * _cdf(z)
    second = (mean * mean + std * std) * _cdf(z) + mean * std * _pdf(z)
    return m, (second - m * m).clamp(min=0.0)
