"""fake_quantize / quantize / calc_qparams against torch's reference ops."""
import pytest
import torch

from fqn_det.quant import QScheme, calc_qparams, fake_quantize, quantize

SCHEMES = [QScheme(4), QScheme(4, symmetric=True), QScheme(8)]
SCHEME_IDS = ['4asym', '4sym', '8asym']


def _data(shape, seed, spread=3.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g) * spread
    # values far outside any range derived below
    flat = x.view(-1)
    idx = torch.randperm(flat.numel(), generator=g)[:max(4, flat.numel() // 20)]
    flat[idx] = (torch.rand(idx.numel(), generator=g) - 0.5) * 2000.0
    return x


def _per_tensor_qparams(scheme, seed):
    g = torch.Generator().manual_seed(seed)
    lo = -torch.rand((), generator=g) * 2 - 0.1
    hi = torch.rand((), generator=g) * 2 + 0.1
    return calc_qparams(lo, hi, scheme)


def _per_channel_qparams(scheme, n, seed):
    g = torch.Generator().manual_seed(seed)
    lo = -torch.rand(n, generator=g) * 2 - 0.05
    hi = torch.rand(n, generator=g) * 2 + 0.05
    # one channel entirely positive, one entirely negative (range widened to 0)
    lo[0], hi[0] = 0.3, 1.7
    hi[1], lo[1] = -0.2, -2.5
    return calc_qparams(lo, hi, scheme)


@pytest.mark.parametrize('scheme', SCHEMES, ids=SCHEME_IDS)
@pytest.mark.parametrize('seed', [0, 1, 2])
def test_per_tensor_matches_torch(scheme, seed):
    x = _data((4, 8, 9, 9), seed)
    scale, zp = _per_tensor_qparams(scheme, seed)
    qmin, qmax = scheme.quant_min, scheme.quant_max
    ours = fake_quantize(x, scale, zp, qmin, qmax)
    ref = torch.fake_quantize_per_tensor_affine(
        x, scale.reshape(1).float(), zp.reshape(1).int(), qmin, qmax)
    assert ours.dtype == x.dtype and ours.shape == x.shape
    assert torch.equal(ours, ref)


@pytest.mark.parametrize('scheme', SCHEMES, ids=SCHEME_IDS)
@pytest.mark.parametrize('axis', [0, 1])
def test_per_channel_matches_torch(scheme, axis):
    x = _data((6, 5, 7, 3), 10 + axis)
    n = x.shape[axis]
    scale, zp = _per_channel_qparams(scheme, n, 20 + axis)
    qmin, qmax = scheme.quant_min, scheme.quant_max
    ours = fake_quantize(x, scale, zp, qmin, qmax, axis)
    ref = torch.fake_quantize_per_channel_affine(x, scale, zp.int(), axis, qmin, qmax)
    assert torch.equal(ours, ref)


@pytest.mark.parametrize('scheme', SCHEMES, ids=SCHEME_IDS)
def test_per_tensor_gradient_matches_torch(scheme):
    x = _data((3, 4, 10, 10), 5)
    scale, zp = _per_tensor_qparams(scheme, 5)
    w = torch.randn(x.shape, generator=torch.Generator().manual_seed(6))
    qmin, qmax = scheme.quant_min, scheme.quant_max
    a = x.clone().requires_grad_(True)
    (fake_quantize(a, scale, zp, qmin, qmax) * w).sum().backward()
    b = x.clone().requires_grad_(True)
    (torch.fake_quantize_per_tensor_affine(b, scale.reshape(1), zp.reshape(1).int(), qmin, qmax)
     * w).sum().backward()
    assert torch.equal(a.grad, b.grad)
    # not a trivial comparison: both clipped and passed-through elements occur
    assert (a.grad == 0).any() and (a.grad != 0).any()


@pytest.mark.parametrize('scheme', SCHEMES, ids=SCHEME_IDS)
@pytest.mark.parametrize('axis', [0, 1])
def test_per_channel_gradient_matches_torch(scheme, axis):
    x = _data((6, 5, 7, 3), 30 + axis)
    scale, zp = _per_channel_qparams(scheme, x.shape[axis], 40 + axis)
    w = torch.randn(x.shape, generator=torch.Generator().manual_seed(7))
    qmin, qmax = scheme.quant_min, scheme.quant_max
    a = x.clone().requires_grad_(True)
    (fake_quantize(a, scale, zp, qmin, qmax, axis) * w).sum().backward()
    b = x.clone().requires_grad_(True)
    (torch.fake_quantize_per_channel_affine(b, scale, zp.int(), axis, qmin, qmax)
     * w).sum().backward()
    assert torch.equal(a.grad, b.grad)
    assert (a.grad == 0).any() and (a.grad != 0).any()


@pytest.mark.parametrize('scheme', SCHEMES, ids=SCHEME_IDS)
def test_gradient_zero_outside_and_identity_inside(scheme):
    scale, zp = calc_qparams(torch.tensor(-1.0), torch.tensor(2.0), scheme)
    qmin, qmax = scheme.quant_min, scheme.quant_max
    lo_real = float((qmin - zp) * scale)
    hi_real = float((qmax - zp) * scale)
    s = float(scale)
    # well inside, well outside (by more than half a step), both sides
    inside = torch.linspace(lo_real + 0.01 * s, hi_real - 0.01 * s, 101)
    outside = torch.cat([torch.linspace(lo_real - 50.0, lo_real - 0.6 * s, 50),
                         torch.linspace(hi_real + 0.6 * s, hi_real + 50.0, 50)])
    x = torch.cat([inside, outside]).requires_grad_(True)
    up = torch.randn(x.shape, generator=torch.Generator().manual_seed(3)) + 5.0  # nonzero
    y = fake_quantize(x, scale, zp, qmin, qmax)
    y.backward(up)
    n_in = inside.numel()
    assert torch.equal(x.grad[:n_in], up[:n_in])
    assert torch.equal(x.grad[n_in:], torch.zeros(outside.numel()))
    # outside values are clipped to the range ends
    assert torch.all(y[n_in:n_in + 50] == lo_real)
    assert torch.all(y[n_in + 50:] == hi_real)


def test_gradient_does_not_flow_to_qparams():
    scale = torch.tensor(0.1, requires_grad=True)
    x = torch.randn(10, requires_grad=True)
    y = fake_quantize(x, scale, torch.tensor(3, dtype=torch.int32), 0, 15)
    y.sum().backward()
    assert x.grad is not None
    assert scale.grad is None  # scale is a fixed qparam, not learned


def _random_ranges(n, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, generator=g) * torch.exp(torch.randn(n, generator=g) * 3)
    b = torch.randn(n, generator=g) * torch.exp(torch.randn(n, generator=g) * 3)
    lo, hi = torch.minimum(a, b), torch.maximum(a, b)
    # ranges entirely positive and entirely negative
    lo[:20] = lo[:20].abs() + 1e-3
    hi[:20] = lo[:20] + torch.rand(20, generator=g) * 5
    hi[20:40] = -hi[20:40].abs() - 1e-3
    lo[20:40] = hi[20:40] - torch.rand(20, generator=g) * 5
    # tiny and huge ranges
    lo[40], hi[40] = -1e-30, 1e-30
    lo[41], hi[41] = -1e6, 3e6
    lo[42], hi[42] = 1e-7, 2e-7
    return lo, hi


@pytest.mark.parametrize('scheme', SCHEMES + [QScheme(2), QScheme(3, True), QScheme(8, True)],
                         ids=SCHEME_IDS + ['2asym', '3sym', '8sym'])
def test_zero_is_exact_and_zero_point_in_range(scheme):
    lo, hi = _random_ranges(500, 11)
    scale, zp = calc_qparams(lo, hi, scheme)
    assert scale.dtype == torch.float32 and zp.dtype == torch.int32
    assert scale.shape == lo.shape == zp.shape
    assert torch.all(torch.isfinite(scale)) and torch.all(scale > 0)
    assert torch.all(zp >= scheme.quant_min) and torch.all(zp <= scheme.quant_max)
    zeros = torch.zeros(7, 500)
    out = fake_quantize(zeros, scale, zp, scheme.quant_min, scheme.quant_max, axis=1)
    # bitwise +0.0 (not -0.0, not a tiny residue)
    assert torch.equal(out.view(torch.int32), torch.zeros(7, 500, dtype=torch.int32))
    for i in range(0, 500, 37):
        o = fake_quantize(torch.zeros(3), scale[i], zp[i], scheme.quant_min, scheme.quant_max)
        assert torch.equal(o.view(torch.int32), torch.zeros(3, dtype=torch.int32))
    if scheme.symmetric:
        assert torch.all(zp == 0)


@pytest.mark.parametrize('scheme', SCHEMES, ids=SCHEME_IDS)
def test_range_is_covered(scheme):
    """The grid spans the (zero-widened) range up to rounding of the zero-point."""
    lo, hi = _random_ranges(300, 12)
    keep = torch.ones(300, dtype=torch.bool)
    keep[[40, 42]] = False  # ranges below float eps: scale is clamped to eps
    lo, hi = lo[keep], hi[keep]
    scale, zp = calc_qparams(lo, hi, scheme)
    lo0, hi0 = lo.clamp(max=0), hi.clamp(min=0)
    grid_lo = (scheme.quant_min - zp).float() * scale
    grid_hi = (scheme.quant_max - zp).float() * scale
    tol = scale * 0.5 + 1e-6 * (hi0 - lo0)
    assert torch.all(grid_lo <= lo0 + tol)
    assert torch.all(grid_hi >= hi0 - tol)
    if scheme.symmetric:
        expected = torch.maximum(-lo0, hi0) / scheme.quant_max
    else:
        expected = (hi0 - lo0) / float(scheme.quant_max - scheme.quant_min)
    torch.testing.assert_close(scale, expected, rtol=1e-6, atol=0)


@pytest.mark.parametrize('scheme', SCHEMES + [QScheme(8, True)], ids=SCHEME_IDS + ['8sym'])
def test_degenerate_range(scheme):
    scale, zp = calc_qparams(torch.tensor(0.0), torch.tensor(0.0), scheme)
    assert torch.isfinite(scale) and scale > 0
    assert scheme.quant_min <= int(zp) <= scheme.quant_max
    out = fake_quantize(torch.tensor([0.0, 1.0, -1.0]), scale, zp, scheme.quant_min,
                        scheme.quant_max)
    assert torch.all(torch.isfinite(out))
    assert out[0] == 0.0
    scale, zp = calc_qparams(torch.zeros(3), torch.zeros(3), scheme)
    assert torch.all(torch.isfinite(scale)) and torch.all(scale > 0)


def test_per_channel_weight_has_at_most_16_levels_per_channel():
    scheme = QScheme(4, per_channel=True)
    w = torch.randn(32, 16, 3, 3, generator=torch.Generator().manual_seed(0))
    w = w * torch.logspace(-3, 1, 32).reshape(-1, 1, 1, 1)  # very different channel scales
    lo, hi = torch.aminmax(w.reshape(32, -1), dim=1)
    scale, zp = calc_qparams(lo, hi, scheme)
    out = fake_quantize(w, scale, zp, scheme.quant_min, scheme.quant_max, axis=0)
    for c in range(32):
        n = out[c].unique().numel()
        assert n <= 16, (c, n)
        assert n >= 8  # 144 gaussian values use most of the grid
    # per-channel quantization error is at most half a step of that channel
    err = (out - w).abs().reshape(32, -1).amax(1)
    assert torch.all(err <= scale * 0.5 * (1 + 1e-5))


@pytest.mark.parametrize('scheme', SCHEMES, ids=SCHEME_IDS)
@pytest.mark.parametrize('axis', [None, 0, 1])
def test_quantize_consistent_with_fake_quantize(scheme, axis):
    x = _data((5, 6, 4, 4), 50)
    if axis is None:
        scale, zp = _per_tensor_qparams(scheme, 51)
    else:
        scale, zp = _per_channel_qparams(scheme, x.shape[axis], 52)
    qmin, qmax = scheme.quant_min, scheme.quant_max
    q = quantize(x, scale, zp, qmin, qmax, axis)
    assert q.dtype == torch.int32
    assert q.min() >= qmin and q.max() <= qmax
    assert q.min() == qmin and q.max() == qmax  # the far-out values hit both ends
    fq = fake_quantize(x, scale, zp, qmin, qmax, axis)
    if axis is None:
        s, z = scale, zp
    else:
        shape = [1] * x.dim()
        shape[axis] = -1
        s, z = scale.reshape(shape), zp.reshape(shape)
    assert torch.equal((q - z).float() * s, fq)


def test_qparams_requiring_grad_do_not_break_backward():
    """Learnable-looking qparams are treated as fixed: no crash, no gradient to them."""
    scale = torch.tensor(0.1, requires_grad=True)
    zp = torch.tensor(3.0, requires_grad=True)
    x = torch.randn(4, 5)
    y = fake_quantize(x, scale, zp, 0, 15)  # x needs no gradient
    assert not y.requires_grad
    xg = x.clone().requires_grad_(True)
    fake_quantize(xg, scale, zp, 0, 15).sum().backward()
    assert scale.grad is None and zp.grad is None and xg.grad is not None


@pytest.mark.parametrize('bits', [2, 4, 8])
@pytest.mark.parametrize('symmetric', [False, True])
def test_calc_qparams_scalar_equals_tensor_version(bits, symmetric):
    """The Python-float fast path gives the tensor version's float32 results exactly."""
    from fqn_det.quant.functional import calc_qparams_scalar
    scheme = QScheme(bits, symmetric=symmetric)
    g = torch.Generator().manual_seed(bits + 10 * symmetric)
    n = 4000
    mag = torch.pow(10.0, torch.empty(n).uniform_(-12, 12, generator=g))
    lo = -mag * torch.rand(n, generator=g)
    hi = mag * torch.rand(n, generator=g)
    lo[:500] = hi[:500] * 0.3  # all-positive ranges
    hi[500:1000] = lo[500:1000] * 0.3  # all-negative ranges
    lo[1000:1100], hi[1000:1100] = 0.0, 0.0  # empty ranges: smallest scale
    lo[1100:1200] = -hi[1100:1200]  # symmetric ranges, exact zero-point ties possible
    lo, hi = lo.double(), hi.double()  # also exercises the rounding to float32
    for a, b in zip(lo.tolist(), hi.tolist()):
        s_ref, zp_ref = calc_qparams(torch.tensor(a), torch.tensor(b), scheme)
        s, zp = calc_qparams_scalar(a, b, scheme)
        assert s == float(s_ref) and zp == int(zp_ref), (a, b)
    assert calc_qparams_scalar(float('nan'), 1.0, scheme) is None
    assert calc_qparams_scalar(-1e300, 1.0, scheme) is None  # beyond float32
