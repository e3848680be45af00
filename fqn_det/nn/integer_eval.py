"""Integer-exact evaluation: in eval mode the quantized model computes what the integer model computes.

While training, every quantized layer is FQN's float fake quantization
(straight-through gradients). In eval mode, once every range is set, each
layer instead takes the integer levels of its (already quantized) input and
applies the integer engine's arithmetic, :mod:`fqn_det.quant.integer_ops`:
exact integer accumulators, the int32 bias, fixed-point requantization, the
integer add, integer pooling and upsampling. It returns the dequantized
levels, so validation during QAT, ``tools/test.py`` on a checkpoint and the
exported integer model give the same head-output integers (float fake
quantization accumulates and rescales in float32, which at 6-8 bits moves
some outputs by a level).

Layers without a linked input quantizer, with a range not set, while
calibrating, or with fake quantization off run the float path. Nothing here
is differentiable: gradients need ``train()``. Runs on the model's device. :func:`float_arithmetic`
switches it off, e.g. to look at pre-quantization values through hooks on the
activation quantizers. Plain PyTorch.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional

import torch
from torch import Tensor, nn

from ..quant import integer_ops as iops

_ENABLED = [True]


@contextmanager
def float_arithmetic() -> Iterator[None]:
    """Evaluate with the float fake-quantization arithmetic (as in training) inside this block."""
    before = _ENABLED[0]
    _ENABLED[0] = False
    try:
        yield
    finally:
        _ENABLED[0] = before


def _ready(q) -> bool:
    return q is not None and bool(q.initialized) and bool(q.fake_quant_enabled) and not q.calibrating


def applies(module: nn.Module, *act_quants, w_quant=None) -> bool:
    """True when ``module`` (in eval mode) can run integer-exactly on the given quantizers."""
    if module.training or not _ENABLED[0]:
        return False
    if w_quant is not None and not bool(w_quant.fake_quant_enabled):
        return False
    return all(_ready(q) for q in act_quants)


def per_tensor(q) -> bool:
    return q is not None and not q.per_channel


def _zp(q, ndim: int) -> Tensor:
    z = q.zero_point.long()
    return z.reshape(1, -1, *([1] * (ndim - 2))) if q.per_channel else z.reshape(())


def _s(q):
    return q.scale.double().reshape(-1).cpu().numpy() if q.per_channel else float(q.scale)


def centered(x: Tensor, q, dtype: torch.dtype = torch.int64) -> Tensor:
    """``q - zero_point`` of ``x``, which is on ``q``'s grid (a dequantized value), as ``dtype``.

    ``x / s`` is within ``|q - z| * 2^-22`` of an integer even in float32, so the
    rounding is exact at every bit width here (at most 16 bits) without float64.
    """
    wide = dtype == torch.float64 or x.dtype == torch.float64
    return torch.round((x.double() if wide else x.float()) / float(q.scale)).to(dtype)


def dequantized(y: Tensor, q) -> Tensor:
    return iops.dequantize(y, _s(q), q.zero_point.long().reshape(-1).cpu() if q.per_channel else int(q.zero_point),
                           q.axis)


def _max_abs_centered(q) -> int:
    return iops.max_abs_centered(int(q.zero_point), q.scheme.quant_min, q.scheme.quant_max)


@torch.no_grad()
def input_quant(q, x: Tensor) -> Tensor:
    """The network input quantized as the integer model quantizes it."""
    s = q.scheme
    return dequantized(iops.quantize_input(x, float(q.scale), int(q.zero_point), s.quant_min, s.quant_max), q)


@torch.no_grad()
def weighted(m: nn.Module, x: Tensor, site: int, w: Tensor, b: Optional[Tensor],
             conv: Optional[dict] = None) -> Tensor:
    """A conv (``conv``: its attributes) or linear with weight ``w`` and bias ``b`` (BN folded)."""
    q_in, q_out = m.in_quants[site], m.out_quant[site]
    iw = iops.integer_weight(m.w_quant, w, b, q_in.scale)
    wi, bias_q = iw.centered, iw.bias
    dtype = iops.kernel_dtype(iops.accumulator_bound(wi, _max_abs_centered(q_in), bias_q))
    acc = iops.accumulate(centered(x, q_in, dtype), wi.to(dtype), dtype, conv).round_().long()
    acc += bias_q.reshape(1, -1, *([1] * (acc.dim() - 2)))
    m0, shift = iops.weighted_multiplier(float(q_in.scale), iw.scale.cpu().numpy(), _s(q_out))
    z = _zp(q_out, acc.dim())
    lo = z if m.relu else q_out.scheme.quant_min
    y = iops.requantize_output(acc, torch.from_numpy(m0), torch.from_numpy(shift), z, lo, q_out.scheme.quant_max)
    return dequantized(y, q_out)


def _moved(y: Tensor, q_in, q_out) -> Tensor:
    """Levels ``y`` on ``q_in``'s grid moved onto ``q_out``'s (nothing to do when the grids agree)."""
    si, so, zi, zo = float(q_in.scale), float(q_out.scale), int(q_in.zero_point), int(q_out.zero_point)
    s_in, s_out = q_in.scheme, q_out.scheme
    if (si, zi, s_in.quant_min, s_in.quant_max) == (so, zo, s_out.quant_min, s_out.quant_max):
        return y
    m0, shift = iops.rescale_multiplier(si, so)
    return iops.rescale(y - zi, m0, shift, zo, s_out.quant_min, s_out.quant_max)


@torch.no_grad()
def add(m: nn.Module, a: Tensor, b: Tensor, site: int) -> Tensor:
    qa, qb = m.in_quants[site]
    q_out = m.out_quant[site]
    so = float(q_out.scale)
    ma, sa = iops.rescale_multiplier(float(qa.scale), so)
    mb, sb = iops.rescale_multiplier(float(qb.scale), so)
    z = int(q_out.zero_point)
    lo = z if m.relu else q_out.scheme.quant_min
    y = iops.integer_add(centered(a, qa), centered(b, qb), ma, sa, mb, sb,
                         z, lo, q_out.scheme.quant_max)
    return dequantized(y, q_out)


@torch.no_grad()
def moved(m: nn.Module, x: Tensor, site: int, op) -> Tensor:
    """``op`` (max-pool, nearest upsampling: it moves integers) on the levels, then onto the output grid."""
    q_in, q_out = m.in_quants[site], m.out_quant[site]
    y = op(centered(x, q_in, torch.float32)).long() + int(q_in.zero_point)  # the op commutes with the shift
    return dequantized(_moved(y, q_in, q_out), q_out)


@torch.no_grad()
def avgpool(m: nn.Module, x: Tensor, site: int) -> Tensor:
    """The sum of the window's centred levels, requantized by ``s_in / (k*k * s_out)``."""
    q_in, q_out = m.in_quants[site], m.out_quant[site]
    kh, kw = m.kernel_size
    dtype = iops.kernel_dtype(kh * kw * _max_abs_centered(q_in))
    acc = torch.nn.functional.avg_pool2d(centered(x, q_in, dtype), m.kernel_size, m.kernel_size, divisor_override=1)
    m0, shift = iops.avgpool_multiplier(float(q_in.scale), kh * kw, m.channels, float(q_out.scale))
    z = int(q_out.zero_point)
    y = iops.requantize_output(acc.round().long(), torch.from_numpy(m0), torch.from_numpy(shift), z,
                               q_out.scheme.quant_min, q_out.scheme.quant_max)
    return dequantized(y, q_out)


@torch.no_grad()
def group_norm(m: nn.Module, x: Tensor, site: int) -> Tensor:
    """GroupNorm on the input levels (:func:`fqn_det.quant.integer_ops.group_norm`)."""
    q_in, q_out = m.in_quants[site], m.out_quant[site]
    g = m.gn
    p = iops.group_norm_params(g.num_groups, g.weight, g.bias, g.num_channels, g.eps, float(q_in.scale),
                               float(q_out.scale))
    z = int(q_out.zero_point)
    y = iops.group_norm(centered(x, q_in), p, _max_abs_centered(q_in), z,
                        z if m.relu else q_out.scheme.quant_min, q_out.scheme.quant_max)
    return dequantized(y, q_out)
