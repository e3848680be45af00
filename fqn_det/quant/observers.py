"""Range observers: streaming histogram percentiles (FQN calibration) and EMA.

FQN (Li et al., CVPR 2019, sec. 3.3) calibrates each activation range on n
training batches to the ``[1 - gamma, gamma]`` percentiles of that layer's
activations, then follows an exponential moving average during fine-tuning
(Jacob et al., CVPR 2018, sec. 3.1). Keeping every batch's activations to take
an exact percentile costs unbounded memory (and ``torch.quantile`` refuses
tensors over 16M elements), so :class:`StreamingHistogram` keeps a fixed number
of bins on a zero-anchored grid whose bin width doubles (merging bin pairs
exactly) whenever new data falls outside it. The percentile error is then at
most one bin, ``max|x| / bins_per_side``. Bin widths are powers of two, so the
histograms of several processes (or of several shards of the data) merge
exactly: grow each to the widest, then add the counts (:meth:`grow_to`).
"""
from __future__ import annotations

import math
from typing import Tuple

import torch
from torch import Tensor

from . import fused

#: Largest subsample used for the per-batch percentile of the EMA statistic.
EMA_SAMPLE = 1 << 16


class NonFiniteActivationError(ValueError):
    """An observed tensor holds NaN or inf."""


class StreamingHistogram:
    """Histogram over a zero-anchored grid with exact bin merging.

    Bin ``k`` (``-bins_per_side <= k < bins_per_side``) counts values in
    ``[k * width, (k + 1) * width)``. When a value with ``|x| >= bins_per_side *
    width`` arrives, the width doubles and bin pairs ``(2j, 2j + 1)`` merge into
    bin ``j``; no count is ever interpolated. The width is always a power of two
    (the smallest that covers the data), so it depends only on the largest
    magnitude seen, not on the order the data came in.

    Args:
        bins_per_side (int): Bins on each side of zero; at least 1024 (the
            default gives 4096 bins in all). Defaults to 2048.
    """

    def __init__(self, bins_per_side: int = 2048) -> None:
        if bins_per_side < 1024 or bins_per_side % 2:
            raise ValueError(f'bins_per_side must be an even number >= 1024, got {bins_per_side}')
        self.bins_per_side = bins_per_side
        self.counts = torch.zeros(2 * bins_per_side, dtype=torch.float64)
        self.width: float | None = None
        self.min_seen = math.inf
        self.max_seen = -math.inf

    @property
    def total(self) -> float:
        return float(self.counts.sum())

    def _grow(self) -> None:
        half = self.bins_per_side // 2
        pairs = self.counts.view(-1, 2).sum(1)  # pair p holds k = -B + 2p, -B + 2p + 1
        self.counts = torch.zeros_like(self.counts)
        self.counts[half:half + self.bins_per_side] = pairs
        self.width *= 2.0

    def update(self, x: Tensor) -> None:
        """Add every element of ``x`` to the histogram.

        Raises:
            NonFiniteActivationError: If ``x`` holds NaN or inf.
        """
        x = x.detach().reshape(-1)
        if x.numel() == 0:
            return
        x = x.float()
        lo, hi = torch.aminmax(x)
        self._cover(float(lo), float(hi))
        b = self.bins_per_side
        # Bin on the tensor's own device; only the 2*b counts come back. The width is a
        # power of two, so x * (1/width) is exact and equals x / width; the in-place float
        # ops and int32 indices make this ~3x faster than floor/long/clamp on int64.
        idx = torch.mul(x, 1.0 / self.width).floor_().clamp_(-b, b - 1).add_(b).to(torch.int32)
        self.counts += torch.bincount(idx, minlength=2 * b).double().cpu()

    def _cover(self, lo: float, hi: float) -> None:
        """Take ``[lo, hi]`` (the next values' extremes) into the seen range, widening the grid to hold it."""
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise NonFiniteActivationError('observed NaN or inf values')
        self.min_seen, self.max_seen = min(self.min_seen, lo), max(self.max_seen, hi)
        amax = max(-lo, hi)
        b = self.bins_per_side
        if self.width is None:
            self.width = covering_width(amax, b)
        while amax >= b * self.width:
            self._grow()

    def grow_to(self, width: float) -> None:
        """Coarsen to ``width`` (a power-of-two multiple of the current width) by exact merging."""
        if self.width is None:
            self.width = width
            return
        if width < self.width or math.frexp(width / self.width)[0] != 0.5:
            raise ValueError(f'cannot grow a histogram of bin width {self.width} to {width}')
        while self.width < width:
            self._grow()

    def quantile(self, q: float) -> float:
        """The ``q``-quantile (0..1) of everything seen, interpolated inside its bin."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f'q must be in [0, 1], got {q}')
        total = self.total
        if total == 0 or self.width is None:
            raise RuntimeError('quantile of an empty histogram')
        if q <= 0.0:
            return self.min_seen
        if q >= 1.0:
            return self.max_seen
        target = q * total
        cum = torch.cumsum(self.counts, 0)
        i = int(torch.searchsorted(cum, torch.tensor([target], dtype=torch.float64)).item())
        i = min(i, cum.numel() - 1)
        before = float(cum[i - 1]) if i > 0 else 0.0
        inside = float(self.counts[i])
        frac = (target - before) / inside if inside > 0 else 0.0
        value = (i - self.bins_per_side + frac) * self.width
        return min(max(value, self.min_seen), self.max_seen)

    def percentile_range(self, gamma: float) -> Tuple[float, float]:
        """The ``[1 - gamma, gamma]`` quantiles; ``gamma == 1`` gives min and max."""
        return self.quantile(1.0 - gamma), self.quantile(gamma)


def update_per_row(hists: list, rows: Tensor) -> None:
    """``hists[c].update(rows[c])`` for every row, with one binning pass for all rows.

    The same counts as the row-by-row updates (each row on its own histogram's grid),
    for the many channels of a per-channel quantizer at a fraction of the cost.

    Raises:
        NonFiniteActivationError: If ``rows`` holds NaN or inf.
    """
    if len(hists) != rows.shape[0]:
        raise ValueError(f'{len(hists)} histograms for {rows.shape[0]} rows')
    if rows.numel() == 0:
        return
    b = hists[0].bins_per_side
    if any(h.bins_per_side != b for h in hists):
        raise ValueError('per-row updates need histograms with the same number of bins')
    rows = rows.detach().float()
    lo, hi = rows.aminmax(dim=1)
    for h, low, high in zip(hists, lo.tolist(), hi.tolist()):
        h._cover(low, high)
    inv = torch.tensor([1.0 / h.width for h in hists], dtype=torch.float32, device=rows.device)
    offset = torch.arange(len(hists), device=rows.device, dtype=torch.int32).mul_(2 * b).unsqueeze(1)
    idx = torch.mul(rows, inv.unsqueeze(1)).floor_().clamp_(-b, b - 1).add_(b).to(torch.int32).add_(offset)
    counts = torch.bincount(idx.reshape(-1), minlength=2 * b * len(hists)).double().cpu().view(len(hists), -1)
    for h, c in zip(hists, counts):
        h.counts += c


def covering_width(amax: float, bins_per_side: int) -> float:
    """The smallest power-of-two bin width whose grid holds ``|x| <= amax``."""
    w = 2.0 ** math.ceil(math.log2(max(amax, 1e-30) / bins_per_side))
    while amax >= bins_per_side * w:  # log2 rounding at exact powers of two
        w *= 2.0
    return w


def _require_finite(ok: bool) -> None:
    if not ok:
        raise NonFiniteActivationError('observed NaN or inf values')


def _all_finite(flat: Tensor) -> bool:
    return bool(torch.isfinite(flat.sum(dtype=torch.float32)))  # one reduction; fp16 sums would overflow


def batch_range(x: Tensor, stat: str, gamma: float, check_finite: bool = False) -> Tuple[Tensor, Tensor]:
    """This batch's range statistic for the EMA: ``'minmax'`` or ``'percentile'``.

    ``'percentile'`` takes the ``[1 - gamma, gamma]`` order statistics of an evenly
    strided subsample of at most :data:`EMA_SAMPLE` elements, which keeps the cost
    a small fraction of the layer's own.

    Raises:
        NonFiniteActivationError: With ``check_finite``, if any element of ``x``
            (not only of the subsample) is NaN or inf.
    """
    x = x.detach()
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        flat = x.permute(0, 2, 3, 1).reshape(-1)  # memory order: a view, not a copy of the activation
    else:
        flat = x.reshape(-1)
    if stat == 'minmax' or gamma >= 1.0:
        lo, hi = torch.aminmax(flat)
        if check_finite:  # NaN and inf both show in the min or the max
            _require_finite(math.isfinite(float(lo)) and math.isfinite(float(hi)))
        return lo.float(), hi.float()
    # An odd stride: a stride sharing a factor with the (often power-of-two) row
    # width would sample the same few image columns every time.
    step = max(1, flat.numel() // EMA_SAMPLE) | 1
    sample = flat[::step].float()
    n = sample.numel()
    k_lo = max(1, min(n, int(math.floor((1.0 - gamma) * (n - 1))) + 1))
    k_hi = max(1, min(n, int(math.ceil(gamma * (n - 1))) + 1))
    if k_lo > n // 64:  # wide tails (gamma well below 0.99): selection beats a large top-k
        if check_finite:
            _require_finite(_all_finite(flat))
        return torch.kthvalue(sample, k_lo).values, torch.kthvalue(sample, k_hi).values
    # The k-th smallest and the (n - k_hi + 1)-th largest: for gamma=0.999 both are ~0.1 %
    # tails, and a partial top-k selects them ~6x faster than kthvalue; the fused kernel
    # selects the same two values from the uncopied strided sample, ~3x faster again,
    # and tests finiteness in the same call.
    if fused.usable(x):
        stats = fused.strided_order_stats(x, step, k_lo, n - k_hi + 1, check_finite)
        if check_finite:
            _require_finite(bool(stats[2]))
        return stats[0], stats[1]
    if check_finite:
        _require_finite(_all_finite(flat))
    lo = torch.topk(sample, k_lo, largest=False, sorted=True).values[-1]
    hi = torch.topk(sample, n - k_hi + 1, largest=True, sorted=True).values[-1]
    return lo, hi


def channel_rows(x: Tensor, axis: int = 1) -> Tensor:
    """``x`` as ``(channels, values)``: one row per slice along ``axis`` (a copy unless already so)."""
    x = x.detach()
    return x.movedim(axis, 0).reshape(x.shape[axis], -1)


def batch_range_per_channel(x: Tensor, stat: str, gamma: float, axis: int = 1,
                            check_finite: bool = False) -> Tuple[Tensor, Tensor]:
    """:func:`batch_range` of each slice of ``x`` along ``axis``: two tensors of one value per channel.

    ``'percentile'`` takes the order statistics of an evenly strided subsample of at
    most ``max(EMA_SAMPLE // channels, 4096)`` values of each channel.

    Raises:
        NonFiniteActivationError: With ``check_finite``, if any element of ``x`` is NaN or inf.
    """
    rows = channel_rows(x, axis)
    if check_finite and rows.numel():
        _require_finite(_all_finite(rows.reshape(-1)))
    if rows.shape[1] == 0:
        raise ValueError('per-channel range of a tensor with no values per channel')
    if stat == 'minmax' or gamma >= 1.0:
        return rows.amin(1).float(), rows.amax(1).float()
    per_row = max(EMA_SAMPLE // rows.shape[0], 4096)
    step = max(1, rows.shape[1] // per_row) | 1
    sample = rows[:, ::step].float()
    n = sample.shape[1]
    k_lo = max(1, min(n, int(math.floor((1.0 - gamma) * (n - 1))) + 1))
    k_hi = max(1, min(n, int(math.ceil(gamma * (n - 1))) + 1))
    return torch.kthvalue(sample, k_lo, 1).values, torch.kthvalue(sample, k_hi, 1).values
