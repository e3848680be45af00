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

import math
from typing import NamedTuple, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .fixed_point import quantize_multiplier, requantize, rounding_rshift
from .functional import bias_levels, quantize

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
    """float32 ``(q - z) * s`` of int64 levels (per tensor, or per channel along ``axis``), correctly rounded.

    When every scale is a float32 number (an activation quantizer's buffer) and
    ``|q - z| < 2^24``, the float32 product is the correctly rounded exact one, so
    it is computed in float32; other scales (e.g. with FCOS's ``Scale`` folded
    in) go through float64.
    """
    s = torch.as_tensor(scale, dtype=torch.float64, device=q.device)
    z = torch.as_tensor(zero_point, dtype=torch.int64, device=q.device)
    if axis is not None and s.numel() > 1:
        shape = [1] * q.dim()
        shape[axis] = -1
        s, z = s.reshape(shape), z.reshape(shape)
    s32 = s.float()
    if torch.equal(s32.double(), s):
        return (q - z).float().mul_(s32)
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


class IntegerWeight(NamedTuple):
    """A weighted layer's integer weight and bias, per output channel ``c``."""
    levels: Tensor      #: int64 weight levels ``q_w`` (not centred)
    zero_point: Tensor  #: int64 ``z_w,c``
    scale: Tensor       #: float64 ``s_w,c``
    bias: Tensor        #: int64 ``round(b_c / (s_x * s_w,c))``

    @property
    def centered(self) -> Tensor:
        """``q_w - z_w,c``, int64."""
        return self.levels - self.zero_point.reshape(-1, *([1] * (self.levels.dim() - 1)))


@torch.no_grad()
def integer_weight(w_quant, w: Tensor, b: Optional[Tensor], in_scale) -> IntegerWeight:
    """The integer weight and bias of a layer whose (BN-folded) weight is ``w`` and bias ``b``.

    ``w_quant`` (a ``WeightQuantizer``) first refreshes its scale and zero-point
    from ``w`` as it is now; ``in_scale`` is the input's scale. The export and the
    integer-exact evaluation both call this, so they hold the same integers.
    """
    w_quant(w)
    s = w_quant.scheme
    cout = w.shape[0]
    levels = quantize(w.detach(), w_quant.scale, w_quant.zero_point, s.quant_min, s.quant_max,
                      0 if s.per_channel else None).long()
    zw = w_quant.zero_point.long().reshape(-1).expand(cout).clone()
    s_w = w_quant.scale.double().reshape(-1).expand(cout).clone()
    bias = torch.zeros(cout, dtype=torch.float64, device=w.device) if b is None else b
    in_scale = torch.as_tensor(in_scale, dtype=torch.float64, device=s_w.device)
    return IntegerWeight(levels, zw, s_w, bias_levels(bias, in_scale, s_w).long())


def max_abs_centered(zero_point, qmin: int, qmax: int) -> int:
    """Largest ``|q - zero_point|`` over the levels ``[qmin, qmax]`` (a zero-point per channel: the largest)."""
    zp = np.asarray(zero_point, dtype=np.int64)
    return int(max((zp - qmin).max(), (qmax - zp).max()))


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
    y = requantize(acc, torch.as_tensor(m0, device=d), torch.as_tensor(shift, device=d), axis=1)
    z, lo = torch.as_tensor(zero_point, device=d), torch.as_tensor(lo, device=d)
    y.add_(z)  # a new tensor from requantize; z broadcasts to it
    if lo.numel() == 1:
        return y.clamp_(int(lo), hi)
    return torch.maximum(y, lo).clamp_(max=hi)


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


#: Fractional bits of GroupNorm's integer standard deviation ``isqrt(V * 4^k)``.
GN_STD_BITS = 4
#: GroupNorm's integer arithmetic stays in int64 while ``m * max|q - z|`` (group size times the
#: largest centred input level) is below this, and ``m Q - S^2 + E`` below :data:`GN_MAX_VAR`.
GN_MAX_GROUP_SUM = 2 ** 26
GN_MAX_VAR = 2 ** 54
#: Significant bits of GroupNorm's ``eps / s_x^2`` (it only regularizes the variance).
GN_EPS_BITS = 12


def isqrt(v: Tensor) -> Tensor:
    """``floor(sqrt(v))`` of int64 ``0 <= v < 2^62``, exact (a float64 guess corrected by one)."""
    r = torch.sqrt(v.double()).floor().long()
    r = r - (r * r > v).long()
    return r + ((r + 1) * (r + 1) <= v).long()


def round_div(a: Tensor, b: Tensor) -> Tensor:
    """``round(a / b)`` with ties away from zero, int64 ``a`` and ``b > 0``."""
    q = torch.div(2 * a.abs() + b, 2 * b, rounding_mode='floor')
    return torch.where(a < 0, -q, q)


class GroupNormParams(NamedTuple):
    """A GroupNorm's integer constants (see :func:`group_norm`), per channel ``c``."""
    groups: int
    m0: np.ndarray      #: fixed-point ``|gamma_c| / s_y``
    shift: np.ndarray
    sign: np.ndarray    #: sign of ``gamma_c`` (-1, 0, 1)
    beta: np.ndarray    #: ``beta_c / s_y`` in the fixed point of the normalized term, ``2^-(31 + shift_c - k)``
    eps_fp: int         #: ``eps / s_x^2`` with ``eps_frac`` fractional bits
    eps_frac: int


def group_norm_params(groups: int, weight: Optional[Tensor], bias: Optional[Tensor], channels: int, eps: float,
                      in_scale: float, out_scale: float) -> GroupNormParams:
    """The integer constants of ``GroupNorm(groups, channels, eps)`` from input scale ``s_x`` to ``s_y``."""
    g = np.ones(channels) if weight is None else weight.detach().double().cpu().numpy()
    b = np.zeros(channels) if bias is None else bias.detach().double().cpu().numpy()
    mag = np.abs(g) / out_scale
    m0, shift = quantize_multiplier(np.where(mag > 0, mag, 1.0))
    if np.any(31 + shift - GN_STD_BITS < 0):
        raise ValueError(f'GroupNorm multiplier |gamma| / s_y up to {mag.max():.3g} is too large for '
                         f'{GN_STD_BITS} fractional bits')
    e = eps / in_scale ** 2
    if not e < 2 ** GN_EPS_BITS:
        raise ValueError(f'GroupNorm eps / s_x^2 = {e:.3g} is too large (eps {eps}, input scale {in_scale:.3g})')
    frac = int(min(62, max(0, GN_EPS_BITS - 1 - math.floor(math.log2(e))))) if e > 0 else 0
    beta = np.round(b / out_scale * np.power(2.0, 31 + shift - GN_STD_BITS))
    if np.any(np.abs(beta) >= 2 ** 62):
        raise ValueError(f'GroupNorm beta / s_y is too large against |gamma| / s_y (up to {np.abs(b).max():.3g} '
                         f'against {mag.min():.3g})')
    return GroupNormParams(groups, m0, shift, np.sign(g).astype(np.int64), beta.astype(np.int64),
                           int(round(e * 2 ** frac)), frac)


def group_norm_eps(m: int, p: GroupNormParams) -> int:
    """``E = round(m^2 eps / s_x^2)`` for a group of ``m`` elements (ties away from zero)."""
    return (m * m * p.eps_fp + ((1 << p.eps_frac) >> 1)) >> p.eps_frac


def group_norm(d: Tensor, p: GroupNormParams, in_max_abs: int, zero_point: int, lo: int, hi: int) -> Tensor:
    """Output levels of a GroupNorm on centred int64 input levels ``d = q - z_x`` (``N, C, ...``).

    Per sample and group of ``m`` elements, with ``S = sum d``, ``Q = sum d^2``, the
    normalized value is ``(m d - S) / sqrt(m Q - S^2 + m^2 eps / s_x^2)`` (the input
    scale cancels): the square root is the exact integer ``isqrt`` with
    :data:`GN_STD_BITS` fractional bits, the division rounds, then ``|gamma_c| / s_y``
    is applied as a fixed-point multiplier, ``beta_c / s_y`` added in the same fixed
    point, and the sum rounded once.
    """
    n, c = d.shape[:2]
    dev = d.device
    g = d.reshape(n, p.groups, -1)
    m = g.shape[2]
    if m * in_max_abs >= GN_MAX_GROUP_SUM:
        raise OverflowError(f'GroupNorm group of {m} elements with centred levels up to {in_max_abs} exceeds '
                            'the int64 integer arithmetic')
    s = g.sum(2, keepdim=True)
    v = m * (g * g).sum(2, keepdim=True) - s * s
    v = v + group_norm_eps(m, p)
    if v.numel() and int(v.max()) >= GN_MAX_VAR:
        raise OverflowError(f'GroupNorm variance term {int(v.max())} of a group of {m} elements exceeds the int64 '
                            'integer arithmetic')
    r = isqrt(v << (2 * GN_STD_BITS)).clamp_(min=1)
    num = (m * g - s).reshape(d.shape)
    shape = (1, c) + (1,) * (d.dim() - 2)
    r = r.expand(n, p.groups, m).reshape(d.shape)

    def per_c(a):
        return torch.as_tensor(a, dtype=torch.int64, device=dev).reshape(shape)

    u = round_div(num * per_c(p.m0), r)
    y = rounding_rshift(per_c(p.sign) * u + per_c(p.beta), per_c(31 + p.shift - GN_STD_BITS))
    return (zero_point + y).clamp_(lo, hi)
