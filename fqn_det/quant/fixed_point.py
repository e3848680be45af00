"""Fixed-point requantization (Jacob et al., CVPR 2018, eq. 5-6), exact in int64.

A real multiplier ``M = s_in * s_w / s_out`` (per output channel) is written as
``M = M0 * 2^-31 * 2^-shift`` with an int32 ``M0`` in ``[2^30, 2^31)``. An int32
accumulator ``acc`` is rescaled as

    round(acc * M0 / 2^(31 + shift))      (ties away from zero, as gemmlowp)

All products stay below 2^62, so int64 tensors compute them exactly.
"""
from __future__ import annotations

import math
from typing import Tuple

import numpy as np
import torch
from torch import Tensor

INT32_MAX = 2 ** 31 - 1


def quantize_multiplier(m: np.ndarray | float) -> Tuple[np.ndarray, np.ndarray]:
    """``(M0, shift)`` int arrays with ``m ~= M0 * 2^-(31 + shift)``, M0 in [2^30, 2^31).

    Args:
        m: Positive real multiplier(s).

    Returns:
        tuple: ``M0`` (int64 array, fits int32) and ``shift`` (int64 array; may be
        negative for multipliers >= 1).
    """
    m = np.atleast_1d(np.asarray(m, dtype=np.float64))
    if not np.all(np.isfinite(m)) or np.any(m <= 0):
        raise ValueError(f'multipliers must be finite and positive, got {m[~(np.isfinite(m) & (m > 0))][:4]}')
    mant, exp = np.frexp(m)  # m = mant * 2^exp, mant in [0.5, 1)
    m0 = np.round(mant * 2.0 ** 31).astype(np.int64)
    carry = m0 == 2 ** 31  # rounding reached 1.0
    m0[carry] //= 2
    exp = exp + carry
    return m0, (-exp).astype(np.int64)


def multiplier_value(m0: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """The real value ``M0 * 2^-(31 + shift)`` a ``(M0, shift)`` pair stands for."""
    return np.asarray(m0, np.float64) * np.power(2.0, -(31 + np.asarray(shift, np.float64)))


def rounding_rshift(x: Tensor, n: Tensor) -> Tensor:
    """``round(x / 2^n)`` with ties away from zero, for int64 ``x`` and ``n >= 0``.

    With ``h = 2^(n-1)`` that is ``(x + h) >> n`` for ``x >= 0`` and
    ``(x + h - 1) >> n`` for ``x < 0`` (``>>`` the arithmetic, flooring shift):
    ``-floor((-x + h) / 2^n) = floor((x + h - 1) / 2^n)``. ``n = 0`` returns ``x``.
    """
    n = n.clamp(max=62)
    pos = n > 0
    half = torch.where(pos, torch.bitwise_left_shift(torch.ones_like(n), (n - 1).clamp(min=0)), torch.zeros_like(n))
    minus_one_if_negative = torch.bitwise_right_shift(x, 63)  # -1 for x < 0, else 0
    if not bool(pos.all()):
        minus_one_if_negative = minus_one_if_negative * pos  # n = 0: nothing to round
    y = x + half
    y += minus_one_if_negative
    return y.bitwise_right_shift_(n)


def requantize(acc: Tensor, m0: Tensor, shift: Tensor, axis: int | None = None) -> Tensor:
    """``round(acc * M0 * 2^-(31 + shift))`` exactly, per channel along ``axis``.

    Args:
        acc (Tensor): int64 accumulators, ``|acc| < 2^31``.
        m0 (Tensor): int64 multipliers in [2^30, 2^31) (scalar or per channel).
        shift (Tensor): int64 shifts (scalar or per channel), ``31 + shift >= 0``.
        axis (int, optional): Channel axis of ``acc`` for per-channel ``m0``/``shift``.
    """
    if acc.dtype != torch.int64:
        raise TypeError(f'requantize expects int64 accumulators, got {acc.dtype}')
    if axis is not None and m0.numel() > 1:
        shape = [1] * acc.dim()
        shape[axis] = -1
        m0, shift = m0.reshape(shape), shift.reshape(shape)
    if acc.numel():
        lo, hi = torch.aminmax(acc)
        if int(hi) >= 2 ** 31 or int(lo) <= -2 ** 31:
            raise OverflowError('accumulator exceeds int32')
    return rounding_rshift(acc * m0, 31 + shift)


def exact_in_float64(max_abs: float) -> bool:
    """True if every integer up to ``max_abs`` in magnitude is exact in float64."""
    return math.isfinite(max_abs) and max_abs < 2 ** 53
