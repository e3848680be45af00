"""StreamingHistogram percentiles against exact numpy quantiles; batch_range."""
import math
import time

import numpy as np
import pytest
import torch

from fqn_det.quant import NonFiniteActivationError, StreamingHistogram, batch_range
from fqn_det.quant.observers import EMA_SAMPLE

QS = (0.001, 0.01, 0.5, 0.99, 0.999)


def _batches(kind, seed, n_batches=6, size=40_000):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n_batches):
        scale = 3.0 ** i  # grows: the grid must double several times
        if kind == 'normal':
            x = torch.randn(size, generator=g)
        elif kind == 'relu_normal':
            x = torch.relu(torch.randn(size, generator=g) + 0.3)
        elif kind == 'student_t':
            # t with 2 degrees of freedom: heavy tails
            z = torch.randn(size, generator=g)
            c = torch.randn(size, 2, generator=g).pow(2).sum(1)
            x = z / torch.sqrt(c / 2)
        elif kind == 'laplace':
            u = torch.rand(size, generator=g) - 0.5
            x = -torch.sign(u) * torch.log1p(-2 * u.abs())
        elif kind == 'exponential':
            x = -torch.log(torch.rand(size, generator=g).clamp_min(1e-12)) + 0.5
        else:
            raise ValueError(kind)
        out.append((x * scale).reshape(8, -1))
    return out


@pytest.mark.parametrize('kind', ['normal', 'relu_normal', 'student_t', 'laplace', 'exponential'])
@pytest.mark.parametrize('seed', [0, 1])
def test_quantiles_within_two_bins_of_exact(kind, seed):
    batches = _batches(kind, seed=seed)
    h = StreamingHistogram(2048)
    widths = []
    for b in batches:
        h.update(b)
        widths.append(h.width)
    assert widths[-1] >= 8 * widths[0], 'test data must make the grid double several times'
    allx = torch.cat([b.reshape(-1) for b in batches]).double().numpy()
    assert h.total == allx.size
    for q in QS:
        exact = float(np.quantile(allx, q))
        got = h.quantile(q)
        assert abs(got - exact) <= 2 * h.width, (q, got, exact, h.width)


@pytest.mark.parametrize('kind', ['normal', 'exponential', 'relu_normal'])
def test_percentile_range(kind):
    batches = _batches(kind, seed=7, n_batches=4)
    h = StreamingHistogram(1024)
    for b in batches:
        h.update(b)
    allx = torch.cat([b.reshape(-1) for b in batches])
    lo, hi = h.percentile_range(1.0)
    assert lo == float(allx.min()) and hi == float(allx.max())
    lo, hi = h.percentile_range(0.99)
    xs = allx.double().numpy()
    assert abs(lo - np.quantile(xs, 0.01)) <= 2 * h.width
    assert abs(hi - np.quantile(xs, 0.99)) <= 2 * h.width


def test_first_batch_all_zero_then_large():
    h = StreamingHistogram(1024)
    h.update(torch.zeros(1000))
    assert h.width < 1e-10
    # enough samples that the tails are denser than one bin
    x = torch.randn(200_000, generator=torch.Generator().manual_seed(0)) * 100
    h.update(x)
    assert h.counts.numel() == 2048
    allx = torch.cat([torch.zeros(1000), x]).double().numpy()
    for q in QS:
        assert abs(h.quantile(q) - np.quantile(allx, q)) <= 2 * h.width


def test_more_than_16m_elements():
    # torch.quantile refuses inputs over 16M elements (2**24); the histogram must not.
    x = torch.randn(17_000_000, generator=torch.Generator().manual_seed(0))
    assert x.numel() > 2 ** 24
    h = StreamingHistogram()
    t0 = time.perf_counter()
    h.update(x)
    med = h.quantile(0.5)
    q999 = h.quantile(0.999)
    elapsed = time.perf_counter() - t0
    assert h.total == 17_000_000
    assert abs(med) <= 2 * h.width + 0.002
    assert abs(q999 - 3.0902) <= 2 * h.width + 0.01
    assert elapsed < 3.0, elapsed


def test_memory_bounded():
    h = StreamingHistogram(1024)
    g = torch.Generator().manual_seed(0)
    for i in range(60):
        h.update(torch.randn(500, generator=g) * 1.5 ** i)
    assert h.counts.numel() == 2 * 1024
    assert h.total == 60 * 500


def test_counts_merge_exactly():
    """Doubling the width merges bins without losing or moving counts across zero."""
    h = StreamingHistogram(1024)
    h.update(torch.tensor([-1.0, -0.5, 0.25, 1.0]))
    h.update(torch.tensor([1000.0]))
    assert h.total == 5
    b = h.bins_per_side
    assert float(h.counts[:b].sum()) == 2  # negatives stay in negative bins
    assert float(h.counts[b:].sum()) == 3


@pytest.mark.parametrize('bad', [float('nan'), float('inf'), float('-inf')])
def test_non_finite_raises(bad):
    h = StreamingHistogram()
    x = torch.randn(1000)
    x[123] = bad
    with pytest.raises(NonFiniteActivationError):
        h.update(x)


@pytest.mark.parametrize('bins', [0, 2, 512, 1022, 1023, 1025, 2047])
def test_bad_bins(bins):
    with pytest.raises(ValueError, match='bins_per_side'):
        StreamingHistogram(bins)


def test_good_bins():
    for b in (1024, 1026, 4096):
        assert StreamingHistogram(b).counts.numel() == 2 * b


def test_empty_quantile_raises():
    h = StreamingHistogram()
    with pytest.raises(RuntimeError):
        h.quantile(0.5)
    h.update(torch.empty(0))
    with pytest.raises(RuntimeError):
        h.quantile(0.5)
    with pytest.raises(RuntimeError):
        h.percentile_range(0.999)


def test_quantile_bad_q():
    h = StreamingHistogram()
    h.update(torch.randn(100))
    for q in (-0.1, 1.5):
        with pytest.raises(ValueError):
            h.quantile(q)


def test_batch_range_minmax():
    x = torch.randn(3, 5, 7, 11, generator=torch.Generator().manual_seed(1)) * 4 + 1
    lo, hi = batch_range(x, 'minmax', 0.999)
    ref = torch.aminmax(x)
    assert torch.equal(lo, ref.min) and torch.equal(hi, ref.max)
    # gamma == 1 means plain min/max for the percentile statistic as well
    lo, hi = batch_range(x, 'percentile', 1.0)
    assert torch.equal(lo, ref.min) and torch.equal(hi, ref.max)


@pytest.mark.parametrize('n', [60_000, 1_000_000])
def test_batch_range_percentile(n):
    x = torch.randn(n, generator=torch.Generator().manual_seed(2)) * 2 + 0.5
    lo, hi = batch_range(x.reshape(-1, 100), 'percentile', 0.999)
    xs = x.double().numpy()
    rng = float(x.max() - x.min())
    tol = 0.01 * rng
    assert abs(float(lo) - np.quantile(xs, 0.001)) <= tol
    assert abs(float(hi) - np.quantile(xs, 0.999)) <= tol
    lo, hi = batch_range(x, 'percentile', 0.99)
    assert abs(float(lo) - np.quantile(xs, 0.01)) <= tol
    assert abs(float(hi) - np.quantile(xs, 0.99)) <= tol


def test_interpolation_inside_bins_on_dense_data():
    """With many samples per bin, interpolating inside the bin is far better than one bin."""
    x = torch.rand(400_000, generator=torch.Generator().manual_seed(3)) * 5 + 1
    h = StreamingHistogram(1024)
    h.update(x)
    xs = x.double().numpy()
    for q in (0.0123, 0.25, 0.5071, 0.777, 0.9871):
        assert abs(h.quantile(q) - np.quantile(xs, q)) <= 0.2 * h.width, q


@pytest.mark.parametrize('gamma', [0.999, 0.99, 0.9])
@pytest.mark.parametrize('n', [1_000, 70_001, 300_000])
def test_batch_range_percentile_is_the_order_statistic(gamma, n):
    """The EMA statistic is exactly the [1-γ, γ] order statistics of the strided subsample."""
    x = torch.randn(n, generator=torch.Generator().manual_seed(n)) * 3
    lo, hi = batch_range(x, 'percentile', gamma)
    sample = x[::max(1, n // EMA_SAMPLE) | 1]
    m = sample.numel()
    k_lo = int(math.floor((1 - gamma) * (m - 1))) + 1
    k_hi = int(math.ceil(gamma * (m - 1))) + 1
    assert torch.equal(lo, torch.kthvalue(sample, k_lo).values)
    assert torch.equal(hi, torch.kthvalue(sample, k_hi).values)


def test_batch_range_reads_channels_last_activations_in_place():
    """NHWC activations (ChannelsLastHook) give the same statistics, read without a copy."""
    x = torch.randn(2, 8, 20, 20, generator=torch.Generator().manual_seed(5)) * 2
    nhwc = x.contiguous(memory_format=torch.channels_last)
    for stat, gamma in (('minmax', 0.999), ('percentile', 0.999), ('percentile', 0.9)):
        ref, got = batch_range(x, stat, gamma), batch_range(nhwc, stat, gamma)
        assert torch.equal(ref[0], got[0]) and torch.equal(ref[1], got[1]), (stat, gamma)  # n < EMA_SAMPLE


def test_update_per_row_equals_row_by_row_updates():
    from fqn_det.quant.observers import update_per_row
    g = torch.Generator().manual_seed(4)
    # rows on very different scales (grids), one all zero, one growing on the second batch
    batches = [torch.randn(4, 3000, generator=g) * torch.tensor([[1e-3], [1.0], [0.0], [50.0]]) for _ in range(2)]
    batches[1][1] *= 300
    per_row = [StreamingHistogram(1024) for _ in range(4)]
    one_by_one = [StreamingHistogram(1024) for _ in range(4)]
    for rows in batches:
        update_per_row(per_row, rows)
        for h, r in zip(one_by_one, rows):
            h.update(r)
    for a, b in zip(per_row, one_by_one):
        assert a.width == b.width and torch.equal(a.counts, b.counts)
        assert (a.min_seen, a.max_seen) == (b.min_seen, b.max_seen)
    bad = batches[0].clone()
    bad[2, 5] = float('nan')
    with pytest.raises(NonFiniteActivationError):
        update_per_row(per_row, bad)
    with pytest.raises(ValueError, match='3 histograms for 4 rows'):
        update_per_row(per_row[:3], batches[0])
    with pytest.raises(ValueError, match='same number of bins'):
        update_per_row([StreamingHistogram(1024), StreamingHistogram(2048)], batches[0][:2])
