"""Fixed-point requantization against exact rational arithmetic."""
from fractions import Fraction

import numpy as np
import pytest
import torch

from fqn_det.quant.fixed_point import multiplier_value, quantize_multiplier, requantize, rounding_rshift


def test_quantize_multiplier_precision_and_range():
    m = np.concatenate([np.random.default_rng(0).uniform(1e-6, 4, 500), [0.5, 1.0, 2 ** -30, 0.9999999999]])
    m0, shift = quantize_multiplier(m)
    assert np.all((m0 >= 2 ** 30) & (m0 < 2 ** 31))
    assert np.max(np.abs(multiplier_value(m0, shift) / m - 1)) < 2 ** -30
    with pytest.raises(ValueError):
        quantize_multiplier([0.0])
    with pytest.raises(ValueError):
        quantize_multiplier([float('nan')])


def _exact(acc: int, m0: int, shift: int) -> int:
    v = Fraction(acc * m0, 2 ** (31 + shift))
    r = int(abs(v) + Fraction(1, 2))  # ties away from zero
    return r if v >= 0 else -r


def test_requantize_matches_exact_rounding():
    rng = np.random.default_rng(1)
    acc = torch.from_numpy(rng.integers(-2 ** 30, 2 ** 30, 2000))
    for m in (0.37, 1e-4, 0.0031, 1.6):
        m0, s = quantize_multiplier(m)
        got = requantize(acc, torch.tensor(m0[0]), torch.tensor(s[0]))
        want = [_exact(int(a), int(m0[0]), int(s[0])) for a in acc[:300]]
        assert got[:300].tolist() == want


def test_rounding_ties_away_from_zero_and_per_channel():
    x = torch.tensor([5, -5, 6, -6, 7, -7], dtype=torch.int64)  # /2 -> 2.5, -2.5, 3, -3, 3.5, -3.5
    assert rounding_rshift(x, torch.tensor(1)).tolist() == [3, -3, 3, -3, 4, -4]
    acc = torch.tensor([[100, 200], [100, 200]], dtype=torch.int64).T.reshape(1, 2, 2)
    m0, s = quantize_multiplier([0.5, 0.25])
    out = requantize(acc, torch.from_numpy(m0), torch.from_numpy(s), axis=1)
    assert out.tolist() == [[[50, 50], [50, 50]]]


def test_rounding_rshift_is_exact_for_every_sign_and_shift():
    rng = np.random.default_rng(3)
    x = torch.from_numpy(np.concatenate([rng.integers(-2 ** 61, 2 ** 61, 3000), np.arange(-40, 41)]))
    for n in (0, 1, 2, 7, 31, 45, 62):
        got = rounding_rshift(x, torch.tensor(n)).tolist()
        assert got == [_exact(int(v), 1, n - 31) for v in x.tolist()], n
    # per-channel shifts, some zero (nothing to round), broadcast over a larger x
    xs = x[:3000].reshape(3, 1000, 1)
    n = torch.tensor([0, 5, 33]).reshape(3, 1, 1)
    got = rounding_rshift(xs, n)
    for c in range(3):
        assert got[c].flatten().tolist() == [_exact(int(v), 1, int(n[c]) - 31) for v in xs[c].flatten().tolist()]


def test_requantize_rejects_bad_accumulators():
    m0, s = quantize_multiplier(0.5)
    with pytest.raises(TypeError):
        requantize(torch.ones(3, dtype=torch.int32), torch.tensor(m0[0]), torch.tensor(s[0]))
    with pytest.raises(OverflowError):
        requantize(torch.tensor([2 ** 31]), torch.tensor(m0[0]), torch.tensor(s[0]))
