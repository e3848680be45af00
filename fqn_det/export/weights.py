"""Zero-centred integer weights, the form every consumer of the integer graph reads.

An asymmetric weight ``q`` in ``[qmin, qmax]`` with per-channel zero-point
``z`` stands for the real value ``(q - z) * s``; the centred integer ``q - z``
has zero-point 0. For 4-bit asymmetric weights ``q`` in ``[0, 15]`` these are
the int8 values ``q - z`` in ``[-15, 15]``: the same integers, so the same
accumulators, on the int8 (u8s8) kernels that need no weight zero-point.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

INT8_MIN, INT8_MAX = -128, 127


def centered_weight(weight: np.ndarray, zero_point: np.ndarray) -> np.ndarray:
    """``q - z`` as int64, ``z`` broadcast along the output-channel axis 0."""
    w = np.asarray(weight).astype(np.int64)
    z = np.asarray(zero_point).astype(np.int64).reshape(-1, *([1] * (w.ndim - 1)))
    return w - z


def centered_int8(weight: np.ndarray, zero_point: np.ndarray) -> Optional[np.ndarray]:
    """The centred weights as int8, or None when they do not fit (e.g. wide 8-bit asymmetric ranges)."""
    c = centered_weight(weight, zero_point)
    if c.size and (int(c.min()) < INT8_MIN or int(c.max()) > INT8_MAX):
        return None
    return c.astype(np.int8)


__all__ = ['centered_weight', 'centered_int8']
