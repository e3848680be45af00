"""DFQ maths with grouped (depthwise) consumers, against the dense block-diagonal reference."""
import pytest
import torch
import torch.nn.functional as F

from fqn_det.dfq import absorb, apply_scales, equalization_scales, expected_output_shift
from fqn_det.dfq.grouped import from_dense, grouped_in_ranges, to_dense
from fqn_det.dfq.equalize import in_channel_ranges


@pytest.mark.parametrize('groups,o,ig', [(6, 6, 1), (4, 8, 2), (1, 5, 3)])
def test_dense_round_trip_and_conv(groups, o, ig):
    g = torch.Generator().manual_seed(groups)
    w = torch.randn(o, ig, 3, 3, generator=g)
    d = to_dense(w, groups)
    assert torch.equal(from_dense(d, groups), w)
    x = torch.randn(1, ig * groups, 5, 5, generator=g)
    torch.testing.assert_close(F.conv2d(x, d, padding=1), F.conv2d(x, w, padding=1, groups=groups))
    torch.testing.assert_close(grouped_in_ranges(w, groups), in_channel_ranges(d))


def test_from_dense_rejects_weights_outside_groups():
    d = to_dense(torch.randn(4, 1, 3, 3), 4)
    d[0, 1] = 1.0
    with pytest.raises(ValueError, match='outside its groups'):
        from_dense(d, 4)


def test_equalization_into_depthwise_preserves_the_function_and_balances_ranges():
    g = torch.Generator().manual_seed(0)
    c = 6
    w1 = torch.randn(c, 4, 1, 1, generator=g) * torch.logspace(-2, 1, c).reshape(-1, 1, 1, 1)
    b1 = torch.randn(c, generator=g)
    wd = torch.randn(c, 1, 3, 3, generator=g)
    x = torch.randn(2, 4, 7, 7, generator=g)

    def f(w1, b1, wd):
        return F.conv2d(F.relu(F.conv2d(x, w1, b1)), wd, padding=1, groups=c)

    s = equalization_scales(w1, [wd], groups=[c])
    w1n, b1n, (wdn,) = apply_scales(w1, b1, [wd], s, groups=[c])
    torch.testing.assert_close(f(w1n, b1n, wdn), f(w1, b1, wd), rtol=1e-4, atol=1e-4)
    r1 = w1n.abs().reshape(c, -1).amax(1)
    torch.testing.assert_close(r1, grouped_in_ranges(wdn, c))  # both ranges sqrt(r1 * r2)
    # the dense computation gives the same scales
    torch.testing.assert_close(s, equalization_scales(w1, [to_dense(wd, c)]))


def test_absorption_and_bias_correction_through_depthwise_match_dense():
    g = torch.Generator().manual_seed(1)
    c = 5
    wd, bd = torch.randn(c, 1, 3, 3, generator=g), torch.randn(c, generator=g)
    cvec = torch.rand(c, generator=g)
    _, (nb,) = absorb(torch.zeros(c), [(wd, bd)], cvec, groups=[c])
    _, (ref,) = absorb(torch.zeros(c), [(to_dense(wd, c), bd)], cvec)
    torch.testing.assert_close(nb, ref)
    wq = torch.round(wd * 4) / 4
    mean = torch.rand(c, generator=g)
    torch.testing.assert_close(expected_output_shift(wd, wq, mean, c),
                               expected_output_shift(to_dense(wd, c), to_dense(wq, c), mean))
