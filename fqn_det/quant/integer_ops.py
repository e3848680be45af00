"""The integer arithmetic of a quantized layer, written once (plain PyTorch).

The integer engine (``fqn_det.export.engine``) and the integer-exact evaluation
of the fake-quantized model (``fqn_det.nn.integer_eval``) both call these
functions, and the export computes its multipliers with them, so the three
agree integer for integer by construction:

- input quantization ``clamp(round(x / s) + z)``, the division in float32 and
  rounding half to even, as ONNX ``QuantizeLinear`` computes it;
- exact integer accumulators from a float kernel (float32 below 2^24, else
  float64), plus the int32 bias;
- fixed-point requantization (:mod:`fqn_det.quant.fixed_point`) and the
  integer add with TFLite's left shift;
- dequantization ``(q - z) * s`` in float64, rounded to float32.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .fixed_point import quantize_multiplier, requantize, rounding_rshift

#: Every integer of magnitude <= 2^24 is exact in float32.
FLOAT32_EXACT = 2 ** 24
#: Fractional bits of the integer add (TFLite's ``left_shift``).
ADD_SHIFT = 20


def quantize_input(x: Tensor, scale, zero_point, qmin: int, qmax: int) -> Tensor:
    """int64 levels ``clamp(round(x / s) + z, qmin, qmax)`` of a float input, per tensor.

    ``x / s`` is computed in float32 and rounded half to even, then the
    zero-point is added: the arithmetic of ONNX ``QuantizeLinear``.
    """
    s = torch.as_tensor(scale, dtype=torch.float32, device=x.device)
    return (torch.round(x.float() / s).long() + int(zero_point)).clamp_(qmin, qmax)


def dequantize(q: Tensor, scale, zero_point, axis: Optional[int] = None) -> Tensor:
    """float32 ``(q - z) * s`` of int64 levels (per tensor, or per channel along ``axis``)."""
    s = torch.as_tensor(scale, dtype=torch.float64, device=q.device)
    z = torch.as_tensor(zero_point, dtype=torch.int64, device=q.device)
    if axis is not None and s.numel() > 1:
        shape = [1] * q.dim()
        shape[axis] = -1
        s, z = s.reshape(shape), z.reshape(shape)
    return ((q - z).double() * s).float()


def weighted_multiplier(in_scale: float, w_scale: np.ndarray, out_scale) -> Tuple[np.ndarray, np.ndarray]:
    """Fixed-point ``(M0, shift)`` of ``M_c = s_in * s_w,c / s_out(,c)`` for a conv / linear."""
    return quantize_multiplier(in_scale * np.asarray(w_scale, np.float64) / np.asarray(out_scale, np.float64))


def avgpool_multiplier(in_scale: float, window: int, channels: int, out_scale: float):
    """Fixed-point ``(M0, shift)`` of ``s_in / (window * s_out)`` for a sum of ``window`` levels, per channel."""
    return quantize_multiplier(np.full(channels, in_scale / window) / out_scale)


def rescale_multiplier(in_scale: float, out_scale: float) -> Tuple[np.ndarray, np.ndarray]:
    """Fixed-point ``(M0, shift)`` of ``s_in / s_out`` (requantization, each input of an add)."""
    return quantize_multiplier(in_scale / out_scale)


def accumulator_bound(w_centered: Tensor, in_max_abs: int, bias: Tensor) -> int:
    """The largest possible ``|acc|``: ``max_c(sum|w_c| * max|x| + |b_c|)``."""
    per_out = w_centered.abs().reshape(w_centered.shape[0], -1).sum(1)
    return int((per_out * in_max_abs + bias.abs()).max())


def kernel_dtype(bound: int) -> torch.dtype:
    """float32 when every partial sum (at most ``bound``) is an exact float32 integer, else float64."""
    return torch.float32 if bound < FLOAT32_EXACT else torch.float64


def accumulate(x_centered: Tensor, w: Tensor, dtype: torch.dtype, conv: Optional[dict] = None) -> Tensor:
    """The accumulators ``sum((q_x - z_x) * (q_w - z_w))`` of a conv (``conv``: its attributes) or linear.

    ``w`` is the centred integer weight already in ``dtype``; the float kernel
    is exact because every partial sum is an integer ``dtype`` holds exactly.
    Returns the accumulators as ``dtype`` integers (``.long()`` is exact).
    """
    xc = x_centered.to(dtype)
    if conv is None:
        acc = F.linear(xc, w)
    else:
        acc = F.conv2d(xc, w, None, conv['stride'], conv['padding'], conv['dilation'], conv['groups'])
    return acc


def requantize_output(acc: Tensor, m0: Tensor, shift: Tensor, zero_point: Tensor, lo, hi: int) -> Tensor:
    """``clamp(z + requant(acc, M), lo, hi)`` per output channel (axis 1); ``z``/``lo`` broadcast to ``acc``."""
    d = acc.device
    y = torch.as_tensor(zero_point, device=d) + requantize(acc, torch.as_tensor(m0, device=d),
                                                          torch.as_tensor(shift, device=d), axis=1)
    return torch.maximum(y, torch.as_tensor(lo, device=d)).clamp_(max=hi)


def integer_add(a_centered: Tensor, b_centered: Tensor, m0_a, shift_a, m0_b, shift_b, zero_point: int,
                lo: int, hi: int, shift: int = ADD_SHIFT) -> Tensor:
    """``clamp(z + round((M_a (a - z_a) + M_b (b - z_b))))`` with ``shift`` fractional bits (TFLite's add)."""
    d = a_centered.device
    ra = requantize(a_centered << shift, torch.as_tensor(m0_a, device=d), torch.as_tensor(shift_a, device=d))
    rb = requantize(b_centered << shift, torch.as_tensor(m0_b, device=d), torch.as_tensor(shift_b, device=d))
    y = zero_point + rounding_rshift(ra + rb, torch.tensor(shift, device=d))
    return y.clamp_(lo, hi)


def rescale(q_centered: Tensor, m0, shift, zero_point: int, qmin: int, qmax: int) -> Tensor:
    """``clamp(z_out + requant(q - z_in, s_in / s_out))``: levels moved to another grid."""
    d = q_centered.device
    y = zero_point + requantize(q_centered, torch.as_tensor(m0, device=d), torch.as_tensor(shift, device=d))
    return y.clamp_(qmin, qmax)
