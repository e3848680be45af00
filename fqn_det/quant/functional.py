"""Fake quantization with clipped straight-through gradients, and qparams.

Implements the uniform affine quantizer of Jacob et al. (CVPR 2018, eq. 1-2)
as used by FQN (Li et al., CVPR 2019, sec. 3.1):

    x_hat = (clamp(round(x / scale + zero_point), qmin, qmax) - zero_point) * scale

Backward is the clipped straight-through estimator: d x_hat / d x = 1 where
``qmin <= round(x / scale + zero_point) <= qmax`` and 0 outside, i.e. both the
values and the gradients are clipped to the quantization range.
"""
from __future__ import annotations

import math
import struct
from typing import Optional, Tuple

import torch
from torch import Tensor

from . import fused
from .qscheme import QScheme

_EPS = torch.finfo(torch.float32).eps


def _broadcast(t: Tensor, x: Tensor, axis: int | None) -> Tensor:
    if axis is None or t.numel() == 1:
        return t.reshape(()) if t.numel() == 1 else t
    shape = [1] * x.dim()
    shape[axis] = -1
    return t.reshape(shape)


class _FakeQuantizeSTE(torch.autograd.Function):
    """Fake quantization with the clipped straight-through estimator.

    The same values and gradients as ``torch.fake_quantize_per_{tensor,channel}_affine``
    (tested on random data) except at exact rounding ties, where torch rounds
    ``x / scale`` before adding the zero-point; here the rounding is that of
    :func:`quantize` and of the integer engine's input quantization. Written as a
    few in-place passes: on this project's 2-core CPU torch's fused kernels were
    ~2.5x slower. Float32 CPU inputs, per tensor or per channel along dim 0, take
    the one-pass kernel of :mod:`fqn_det.quant.fused` when it is available: the
    same results, bit for bit.
    """

    @staticmethod
    def forward(ctx, x: Tensor, scale: Tensor, zero_point: Tensor, qmin: int, qmax: int,
                axis: int | None) -> Tensor:
        ctx.fused = fused.supports(x, scale, axis)
        if ctx.fused:
            out, inside = fused.forward(x, scale, zero_point, qmin, qmax, ctx.needs_input_grad[0])
            if ctx.needs_input_grad[0]:
                ctx.save_for_backward(inside)
            return out
        s = _broadcast(scale.to(x.dtype), x, axis)
        zp = _broadcast(zero_point.to(x.dtype), x, axis)
        q = torch.div(x, s).add_(zp).round_()
        out = q.clamp(qmin, qmax)
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(torch.eq(out, q))  # inside the range: not clipped
        return out.sub_(zp).mul_(s)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (inside,) = ctx.saved_tensors
        if ctx.fused:
            return fused.backward(grad, inside), None, None, None, None, None
        # the same products as grad * inside; multiplying by a bool tensor is ~8x slower on CPU
        return grad * inside.to(grad.dtype), None, None, None, None, None


def fake_quantize(x: Tensor, scale: Tensor, zero_point: Tensor, qmin: int, qmax: int,
                  axis: int | None = None) -> Tensor:
    """Quantize-dequantize ``x`` (per tensor when ``axis`` is None, else per channel).

    ``scale`` and ``zero_point`` are fixed qparams: no gradient flows to them.

    Args:
        x (Tensor): Input.
        scale (Tensor): Positive scale(s): a scalar, or one per slice along ``axis``.
        zero_point (Tensor): Integer-valued zero-point(s), same shape as ``scale``.
        qmin (int): Lowest integer level.
        qmax (int): Highest integer level.
        axis (int, optional): Channel axis for per-channel quantization.

    Returns:
        Tensor: ``x`` rounded to the grid, clipped to ``[qmin, qmax]``, in real units.
    """
    return _FakeQuantizeSTE.apply(x, scale.detach(), zero_point.detach(), qmin, qmax, axis)


def quantize(x: Tensor, scale: Tensor, zero_point: Tensor, qmin: int, qmax: int,
             axis: int | None = None) -> Tensor:
    """Integer levels ``clamp(round(x / scale + zero_point), qmin, qmax)`` (int32), in ``x``'s dtype."""
    s = _broadcast(scale.to(x.dtype), x, axis)
    zp = _broadcast(zero_point.to(x.dtype), x, axis)
    return torch.round(x / s + zp).clamp_(qmin, qmax).to(torch.int32)


def bias_levels(bias: Tensor, in_scale: Tensor, w_scale: Tensor) -> Tensor:
    """Integer levels ``round(b / (s_in * s_w))`` of a bias on its accumulator grid, in float64.

    The one implementation of bias rounding: the fake-quantized layers and the
    integer export both call it, so a bias never rounds differently in the two
    (float32 ``b / step`` would, near ties). Returns float64 integers.
    """
    step = in_scale.detach().double() * w_scale.detach().double()
    return torch.round(bias.detach().double() / step)


def calc_qparams(min_val: Tensor, max_val: Tensor, scheme: QScheme) -> Tuple[Tensor, Tensor]:
    """Scale and integer zero-point for the range ``[min_val, max_val]``.

    The range is first widened to contain 0 so that 0 is exactly representable.
    Asymmetric: ``scale = (max - min) / (qmax - qmin)``,
    ``zero_point = clamp(round(qmin - min / scale), qmin, qmax)``.
    Symmetric: ``scale = max(|min|, |max|) / qmax``, ``zero_point = 0``.

    Args:
        min_val (Tensor): Range minimum (scalar or per channel).
        max_val (Tensor): Range maximum, same shape.
        scheme (QScheme): Target scheme.

    Returns:
        tuple[Tensor, Tensor]: ``scale`` (float32) and ``zero_point`` (int32).
    """
    min_neg = torch.clamp(min_val.detach().float(), max=0.0)
    max_pos = torch.clamp(max_val.detach().float(), min=0.0)
    qmin, qmax = scheme.quant_min, scheme.quant_max
    if scheme.symmetric:
        scale = torch.maximum(-min_neg, max_pos) / qmax
        scale = torch.clamp(scale, min=_EPS)
        zero_point = torch.zeros_like(scale, dtype=torch.int32)
    else:
        scale = torch.clamp((max_pos - min_neg) / float(qmax - qmin), min=_EPS)
        zero_point = torch.clamp(torch.round(qmin - min_neg / scale), qmin, qmax).to(torch.int32)
    return scale, zero_point


_F32 = struct.Struct('f')


def _f32(v: float) -> float:
    """``v`` rounded to the nearest float32 (ties to even); OverflowError outside its range."""
    return _F32.unpack(_F32.pack(v))[0]


def calc_qparams_scalar(min_val: float, max_val: float, scheme: QScheme) -> Optional[Tuple[float, int]]:
    """:func:`calc_qparams` for one range, in Python floats: the same float32 scale and zero-point.

    Every float32 operation of :func:`calc_qparams` is done here in double and
    rounded to float32, which gives the correctly rounded float32 result of
    each ``+ - * /`` (double carries more than 2 * 24 + 2 bits), so the results
    are equal, not close; ``round`` is half to even in both. It skips the ten
    small tensor operations of the tensor version, which an activation
    quantizer would otherwise run at every QAT step. Returns None for ranges it
    does not take (NaN, or beyond float32); use :func:`calc_qparams` then.
    """
    try:
        min_neg, max_pos = min(_f32(min_val), 0.0), max(_f32(max_val), 0.0)
        qmin, qmax = scheme.quant_min, scheme.quant_max
        if scheme.symmetric:
            scale, zero_point = max(_f32(max(-min_neg, max_pos) / qmax), _EPS), 0
        else:
            scale = max(_f32(_f32(max_pos - min_neg) / float(qmax - qmin)), _EPS)
            zero_point = _f32(qmin - _f32(min_neg / scale))
    except OverflowError:
        return None
    if not (math.isfinite(min_neg) and math.isfinite(max_pos) and math.isfinite(scale)
            and math.isfinite(zero_point)):
        return None
    return scale, min(max(round(zero_point), qmin), qmax)
