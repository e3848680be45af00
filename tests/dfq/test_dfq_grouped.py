"""DFQ maths through a depthwise consumer, on the dense block-diagonal form of its weight."""
import torch
import torch.nn.functional as F

from fqn_det.dfq import absorb, apply_scales, equalization_scales, expected_output_shift
from fqn_det.dfq.equalize import in_channel_ranges, out_channel_ranges
from fqn_det.dfq.grouped import dense, grouped


class _Layer(torch.nn.Module):
    def __init__(self, conv):
        super().__init__()
        self.conv = conv


def _dw(c, seed):
    torch.manual_seed(seed)
    return _Layer(torch.nn.Conv2d(c, c, 3, padding=1, groups=c))


def test_equalization_into_depthwise_preserves_the_function_and_balances_ranges():
    g = torch.Generator().manual_seed(0)
    c = 6
    w1 = torch.randn(c, 4, 1, 1, generator=g) * torch.logspace(-2, 1, c).reshape(-1, 1, 1, 1)
    b1 = torch.randn(c, generator=g)
    m = _dw(c, 0)
    wd = m.conv.weight.detach()
    x = torch.randn(2, 4, 7, 7, generator=g)

    def f(w1, b1, wd):
        return F.conv2d(F.relu(F.conv2d(x, w1, b1)), wd, padding=1, groups=c)

    s = equalization_scales(w1, [dense(m, wd)])
    w1n, b1n, (wdn,) = apply_scales(w1, b1, [dense(m, wd)], s)
    wdn = grouped(m, wdn)
    assert wdn.shape == wd.shape
    torch.testing.assert_close(f(w1n, b1n, wdn), f(w1, b1, wd), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out_channel_ranges(w1n), in_channel_ranges(dense(m, wdn)))  # both sqrt(r1 r2)


def test_depthwise_as_producer_and_consumer():
    """A depthwise conv's output channel i is its input channel i: absorption and bias correction per channel."""
    c = 5
    m = _dw(c, 1)
    wd, bd = m.conv.weight.detach(), m.conv.bias.detach()
    cvec = torch.rand(c)
    _, (nb,) = absorb(torch.zeros(c), [(dense(m, wd), bd)], cvec)
    torch.testing.assert_close(nb, bd + wd.reshape(c, -1).sum(1) * cvec)
    wq = torch.round(wd * 4) / 4
    mean = torch.rand(c)
    torch.testing.assert_close(expected_output_shift(dense(m, wd), dense(m, wq), mean),
                               (wq - wd).reshape(c, -1).sum(1) * mean)
