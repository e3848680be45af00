"""Keep quantizer state identical across data-parallel processes (plain torch.distributed).

FQN's calibration histograms and EMA ranges are computed from each process's
own batches. Without synchronization every rank would end with different
activation ranges, and the exported model would depend on which rank saved it.

* Calibration: every rank's histograms are merged exactly (power-of-two bin
  widths: grow all to the widest, then sum the counts), so the percentiles are
  those of the union of all ranks' batches — the same ranges a single process
  gets from the same global batches.
* EMA: each training step's batch statistic is all-reduced before the update:
  ``min``/``max`` exactly (global min and max), the percentile statistic as
  the mean of the ranks' percentiles (as SyncBN averages statistics). All ranks
  then apply the same update and stay identical.

Nothing here does anything unless a process group with more than one rank is
initialized, so single-process code pays nothing.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .observers import StreamingHistogram


def world_size() -> int:
    """Ranks in the default process group (1 when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def _collective_device(t: Tensor) -> Tensor:
    # NCCL reduces CUDA tensors only; gloo CPU tensors.
    if dist.get_backend() == 'nccl' and not t.is_cuda:
        return t.cuda()
    return t


def sync_histograms(hists: Sequence[StreamingHistogram]) -> None:
    """Merge every rank's histograms in place; all ranks end with the global histograms.

    ``hists`` must list the same quantizers in the same order on every rank.
    """
    if world_size() == 1 or not hists:
        return
    widths = torch.tensor([h.width or 0.0 for h in hists], dtype=torch.float64)
    widths = _collective_device(widths)
    dist.all_reduce(widths, op=dist.ReduceOp.MAX)
    for h, w in zip(hists, widths.cpu().tolist()):
        if w > 0:
            h.grow_to(w)
    counts = _collective_device(torch.stack([h.counts for h in hists]))
    dist.all_reduce(counts, op=dist.ReduceOp.SUM)
    # one MAX-reduction for both ends: max(-min) == -min(min)
    ends = torch.tensor([[-h.min_seen, h.max_seen] for h in hists], dtype=torch.float64)
    ends = _collective_device(ends)
    dist.all_reduce(ends, op=dist.ReduceOp.MAX)
    for h, c, (neg_lo, hi) in zip(hists, counts.cpu(), ends.cpu().tolist()):
        h.counts = c.clone()
        h.min_seen, h.max_seen = -neg_lo, hi


def reduce_batch_range(lo: Tensor, hi: Tensor, exact_extremes: bool) -> Tuple[Tensor, Tensor]:
    """All-reduce one batch's range statistic across ranks.

    Args:
        lo, hi: This rank's statistic (0-dim tensors, or one value per channel).
        exact_extremes: The statistic is min/max: reduce to the global min/max.
            Otherwise (percentiles) take the mean over ranks.
    """
    n = world_size()
    if n == 1:
        return lo, hi
    if exact_extremes:
        t = _collective_device(torch.stack([-lo.float(), hi.float()]))
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return -t[0].to(lo.device), t[1].to(hi.device)
    t = _collective_device(torch.stack([lo.float(), hi.float()]))
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    t = t / n
    return t[0].to(lo.device), t[1].to(hi.device)


def quantizer_state_digest(model: nn.Module) -> Tensor:
    """Every activation quantizer's range and flags, flattened in module order (float64)."""
    from .fake_quantize import ActQuantizer
    parts = [torch.cat([t.double().cpu().reshape(-1) for t in (q.min_val, q.max_val, q.scale, q.zero_point,
                                                                  q.initialized)])
             for q in model.modules() if isinstance(q, ActQuantizer)]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)


def assert_ranks_agree(model: nn.Module, what: str = 'activation ranges') -> None:
    """Raise if any rank's quantizer state differs from rank 0's (no-op when not distributed)."""
    if world_size() == 1:
        return
    mine = quantizer_state_digest(model)
    ref = _collective_device(mine.clone())
    dist.broadcast(ref, src=0)
    ref = ref.cpu()
    diff = torch.zeros(1, dtype=torch.float64)
    if ref.shape != mine.shape or not torch.equal(ref, mine):
        diff.fill_(1)
    diff = _collective_device(diff)
    dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    if float(diff) > 0:
        raise RuntimeError(f'{what} differ between ranks after synchronization (rank '
                           f'{dist.get_rank()} vs rank 0); refusing to continue with inconsistent '
                           'quantizers')


__all__ = ['world_size', 'sync_histograms', 'reduce_batch_range', 'assert_ranks_agree',
           'quantizer_state_digest']
