"""DFQ maths on plain tensors: equalization, absorption, bias correction, ReLU moments."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fqn_det.dfq import (absorb, absorption_amount, apply_scales, corrected_bias, equalization_scales,
                         in_channel_ranges, out_channel_ranges, relu_moments)
from fqn_det.quant import QScheme, WeightQuantizer


def _pair(seed=0):
    g = torch.Generator().manual_seed(seed)
    # strongly unequal channel ranges, as in trained networks with BN folded
    w1 = torch.randn(16, 8, 3, 3, generator=g) * torch.logspace(-2, 1, 16).reshape(-1, 1, 1, 1)
    b1 = torch.randn(16, generator=g)
    w2 = torch.randn(12, 16, 3, 3, generator=g)
    b2 = torch.randn(12, generator=g)
    x = torch.randn(4, 8, 20, 20, generator=g)
    return w1, b1, w2, b2, x


def _net(w1, b1, w2, b2, x, pad=1):
    return F.conv2d(F.relu(F.conv2d(x, w1, b1, padding=1)), w2, b2, padding=pad)


def test_equalization_preserves_outputs_and_balances_ranges():
    w1, b1, w2, b2, x = _pair()
    ref = _net(w1, b1, w2, b2, x)
    s = equalization_scales(w1, [w2])
    e1, eb1, (e2,) = apply_scales(w1, b1, [w2], s)
    out = _net(e1, eb1, e2, b2, x)
    assert float((out - ref).abs().max() / ref.abs().max()) <= 1e-5
    r1, r2 = out_channel_ranges(e1), in_channel_ranges(e2)
    torch.testing.assert_close(r1, r2, rtol=1e-5, atol=0)
    torch.testing.assert_close(r1, torch.sqrt(out_channel_ranges(w1) * in_channel_ranges(w2)), rtol=1e-5, atol=0)
    spread = lambda r: float(r.max() / r.min())  # noqa: E731
    assert spread(r1) < spread(out_channel_ranges(w1)) / 10


def test_equalization_with_two_consumers_uses_their_max_range():
    w1, b1, w2, _, _ = _pair()
    w3 = torch.randn(5, 16) * 7
    s = equalization_scales(w1, [w2, w3])
    r2 = torch.maximum(in_channel_ranges(w2), in_channel_ranges(w3))
    torch.testing.assert_close(s, torch.sqrt(out_channel_ranges(w1) / r2))


def test_equalization_improves_per_tensor_quantization():
    w1, b1, w2, b2, x = _pair()
    ref = _net(w1, b1, w2, b2, x)
    wq = lambda w: WeightQuantizer(QScheme(8, per_channel=False), w.shape[0])(w)  # noqa: E731
    err_plain = (_net(wq(w1), b1, wq(w2), b2, x) - ref).pow(2).mean()
    e1, eb1, (e2,) = apply_scales(w1, b1, [w2], equalization_scales(w1, [w2]))
    err_eq = (_net(wq(e1), eb1, wq(e2), b2, x) - ref).pow(2).mean()
    assert err_eq < err_plain / 2


def test_absorption_amount_is_beta_minus_three_gamma():
    beta, gamma = torch.tensor([5.0, 1.0, -2.0]), torch.tensor([1.0, 1.0, 0.5])
    assert absorption_amount(beta, gamma).tolist() == [2.0, 0.0, 0.0]


def test_high_bias_absorption_exact_where_relu_does_not_clip():
    w1, b1, w2, b2, x = _pair(1)
    b1 = b1.abs() * 20 + 5  # high biases
    pre = F.conv2d(x, w1, b1, padding=1)
    c = torch.clamp(pre.amin((0, 2, 3)), min=0)  # as large as possible without any clipping
    assert int((c > 0).sum()) >= 4
    nb1, (nb2,) = absorb(b1, [(w2, b2)], c)
    # no padding in the consumer: every output position sees only real inputs
    ref = _net(w1, b1, w2, b2, x, pad=0)
    out = _net(w1, nb1, w2, nb2, x, pad=0)
    assert float((out - ref).abs().max() / ref.abs().max()) <= 1e-5
    torch.testing.assert_close(nb1, b1 - c)


def test_relu_moments_match_sampling():
    g = torch.Generator().manual_seed(0)
    mean, std = torch.tensor([-1.0, 0.0, 2.0]), torch.tensor([0.5, 1.0, 3.0])
    y = torch.relu(mean + std * torch.randn(400000, 3, generator=g))
    m, v = relu_moments(mean, std)
    torch.testing.assert_close(m, y.mean(0), rtol=0.01, atol=2e-3)
    torch.testing.assert_close(v, y.var(0), rtol=0.02, atol=2e-3)


@pytest.mark.parametrize('per_channel', [False, True])
def test_bias_correction_removes_mean_output_shift(per_channel):
    g = torch.Generator().manual_seed(2)
    w = torch.randn(32, 16, 3, 3, generator=g) * torch.logspace(-1, 0.5, 32).reshape(-1, 1, 1, 1)
    b = torch.zeros(32)
    x = torch.relu(torch.randn(8, 16, 24, 24, generator=g) + 1.0)
    w_q = WeightQuantizer(QScheme(4, per_channel=per_channel), 32)(w)
    ref = F.conv2d(x, w, b)
    shift = lambda bias: (F.conv2d(x, w_q, bias) - ref)[:, :, 1:-1, 1:-1].mean((0, 2, 3))  # noqa: E731
    before = shift(b).abs().mean()
    after = shift(corrected_bias(b, w, w_q, x.mean((0, 2, 3)))).abs().mean()
    assert after < before / 10
    assert np.isfinite(float(after))
