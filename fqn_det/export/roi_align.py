"""RoIAlign on integer features in fixed-point arithmetic.

Follows mmcv's ``roi_align`` (average mode, ``aligned`` offset, adaptive
sampling grid when ``sampling_ratio == 0``) and mmdet's level mapping. The
sample positions and bilinear weights come from the float RoI boxes (box
decoding and NMS are float post-processing in FQN too); the weights are
rounded to ``2^-WEIGHT_BITS`` and everything after is integer:

    acc = sum_samples sum_4 W_i * (q_i - z_l)                       (int64)
    q_out = z_out + round(acc * M0_l / (2^(31 + shift_l + WEIGHT_BITS) * count))

with ``M_l = s_l / s_out`` per FPN level ``l``.
"""
from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..quant.fixed_point import quantize_multiplier
from .graph import TensorQ

WEIGHT_BITS = 12


def map_roi_levels(rois: Tensor, num_levels: int, finest_scale: int = 56) -> Tensor:
    """mmdet's ``SingleRoIExtractor.map_roi_levels``."""
    scale = torch.sqrt((rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2]))
    return torch.floor(torch.log2(scale / finest_scale + 1e-6)).clamp(min=0, max=num_levels - 1).long()


def _round_div(num: Tensor, den: Tensor) -> Tensor:
    """``round(num / den)`` (ties away from zero) for int64, ``den > 0``."""
    q = torch.div(num.abs() + den // 2, den, rounding_mode='floor')
    return torch.where(num < 0, -q, q)


def _sample_grid(rois: Tensor, scale: float, out_h: int, out_w: int, sampling_ratio: int, aligned: bool):
    off = 0.5 if aligned else 0.0
    x1, y1 = rois[:, 1] * scale - off, rois[:, 2] * scale - off
    x2, y2 = rois[:, 3] * scale - off, rois[:, 4] * scale - off
    rw, rh = x2 - x1, y2 - y1
    if not aligned:
        rw, rh = rw.clamp(min=1.0), rh.clamp(min=1.0)
    bh, bw = rh / out_h, rw / out_w
    if sampling_ratio > 0:
        gh = torch.full_like(rh, sampling_ratio).long()
        gw = torch.full_like(rw, sampling_ratio).long()
    else:
        gh, gw = torch.ceil(rh / out_h).long(), torch.ceil(rw / out_w).long()
    return x1, y1, bh, bw, gh.clamp(min=0), gw.clamp(min=0)


def integer_roi_align(feats: Sequence[Tensor], feat_q: Sequence[TensorQ], rois: Tensor, out_q: TensorQ,
                      strides: Sequence[int], output_size: Sequence[int], sampling_ratio: int = 0,
                      aligned: bool = True, finest_scale: int = 56) -> Tensor:
    """Integer RoI features ``(num_rois, C, out_h, out_w)`` (int64 levels of ``out_q``).

    All RoIs of a level are one batched computation: every output bin is a
    bag of (sample, corner) entries whose integer weights multiply rows of the
    level's ``(N*H*W, C)`` feature table, summed by ``embedding_bag`` over the
    entries with non-zero weight, in float32 where the bins' bound
    ``sum(weights) * max|q - z|`` is below 2^24 and in float64 otherwise (integer
    products and sums below those limits are exact). The RoIs of a level are
    sorted by sampling-grid size and taken :data:`CHUNK_ROIS` at a time.

    Args:
        feats: int64 feature maps per level ``(N, C, H, W)``.
        feat_q: Their quantization.
        rois: ``(num_rois, 5)`` float boxes ``(batch_idx, x1, y1, x2, y2)`` in image pixels.
        out_q: Output quantization (the RoI extractor's quantizer).
        strides: Feature strides per level.
        output_size: ``(out_h, out_w)``.
    """
    if not len(feats) == len(feat_q) == len(strides):
        raise ValueError(f'integer_roi_align got {len(feats)} feature maps, {len(feat_q)} quantizations and '
                         f'{len(strides)} strides; they must match')
    out_h, out_w = output_size
    c = feats[0].shape[1]
    out = torch.full((rois.shape[0], c, out_h, out_w), out_q.zero_point, dtype=torch.int64)
    if rois.numel() == 0:
        return out
    levels = map_roi_levels(rois, len(feats), finest_scale)
    for lvl, (f, tq, stride) in enumerate(zip(feats, feat_q, strides)):
        idx = torch.nonzero(levels == lvl).squeeze(1)
        if idx.numel() == 0:
            continue
        m0, shift = quantize_multiplier(tq.scale / out_q.scale)
        m0, n = int(m0[0]), 31 + int(shift[0]) + WEIGHT_BITS
        # one row per (image, y, x) of centred integers; float32 / float64 hold them exactly
        max_abs = tq.max_abs_centered
        table = f.permute(0, 2, 3, 1).reshape(-1, c).to(torch.float32 if max_abs < 2 ** 24 else torch.float64)
        table -= tq.zero_point
        x1, y1, bh, bw, gh, gw = _sample_grid(rois[idx], 1.0 / stride, out_h, out_w, sampling_ratio, aligned)
        # RoIs sorted by grid size, in chunks that pad to their own largest grid (little padding)
        order = torch.argsort(gh * gw, stable=True)
        for s in range(0, idx.numel(), CHUNK_ROIS):
            sl = order[s:s + CHUNK_ROIS]
            acc = _level_acc(table, max_abs, f.shape, rois[idx[sl], 0].long(), x1[sl], y1[sl], bh[sl], bw[sl],
                             gh[sl], gw[sl], out_h, out_w)
            count = (gh[sl] * gw[sl]).clamp(min=1)
            den = (1 << n) * count if n < 62 else torch.full_like(count, 1 << 62)
            out[idx[sl]] = out_q.zero_point + _round_div(acc * m0, den.reshape(-1, 1, 1, 1))
    return out.clamp_(out_q.qmin, out_q.qmax)


#: RoIs handled at once (bounds memory; each chunk pads to its own largest sampling grid).
CHUNK_ROIS = 128


def _level_acc(table: Tensor, max_abs: int, fshape, batch: Tensor, x1: Tensor, y1: Tensor, bh: Tensor, bw: Tensor,
               gh: Tensor, gw: Tensor, out_h: int, out_w: int) -> Tensor:
    """``acc[r, c, ph, pw] = sum_samples sum_4 W * (q - z)`` (int64) for RoIs sharing one level."""
    _, c, h, w = fshape
    r = x1.shape[0]
    g_h, g_w = max(int(gh.max()), 1), max(int(gw.max()), 1)
    ys, vsy = _positions(y1, bh, gh, out_h, g_h)  # (R, out_h, G_h)
    xs, vsx = _positions(x1, bw, gw, out_w, g_w)
    ylo, yhi, wy0, wy1, vy = _axis(ys, h)
    xlo, xhi, wx0, wx1, vx = _axis(xs, w)
    # entries (R, out_h, out_w, G_h, G_w, corner_y, corner_x)
    yi = torch.stack([ylo, yhi], -1)[:, :, None, :, None, :, None]
    wy = torch.stack([wy0, wy1], -1)[:, :, None, :, None, :, None]
    xi = torch.stack([xlo, xhi], -1)[:, None, :, None, :, None, :]
    wx = torch.stack([wx0, wx1], -1)[:, None, :, None, :, None, :]
    valid = ((vy & vsy)[:, :, None, :, None, None, None] & (vx & vsx)[:, None, :, None, :, None, None])
    wgt = torch.round(wy * wx * (1 << WEIGHT_BITS)).long() * valid
    rows = (batch.reshape(-1, 1, 1, 1, 1, 1, 1) * h + yi) * w + xi
    # only the entries that contribute: padding samples, invalid and zero-weight corners dropped
    keep = (wgt != 0).reshape(r * out_h * out_w, -1)
    counts = keep.sum(1)
    offsets = torch.cumsum(counts, 0) - counts
    wgt_kept = wgt.reshape(keep.shape)[keep]
    # |acc| <= sum(weights of a bin) * max|q - z|: float32 where that is < 2^24 (exact), else float64
    bound = int(wgt.reshape(keep.shape).sum(1).max()) if wgt.numel() else 0
    dtype = torch.float32 if bound * max_abs < 2 ** 24 else torch.float64
    acc = F.embedding_bag(rows.expand(wgt.shape).reshape(keep.shape)[keep], table.to(dtype), offsets, mode='sum',
                          per_sample_weights=wgt_kept.to(dtype))
    return acc.reshape(r, out_h, out_w, c).permute(0, 3, 1, 2).round().long()


def _positions(start: Tensor, bin_size: Tensor, grid: Tensor, out: int, g_max: int):
    """Sample coordinates ``(R, out, g_max)`` along one axis (as mmcv) and which of them exist."""
    i = torch.arange(g_max, dtype=torch.float64)
    frac = (i[None] + 0.5) / grid.clamp(min=1)[:, None].double()  # (R, g_max)
    pos = start.double()[:, None, None] + (torch.arange(out, dtype=torch.float64)[None, :, None]
                                           + frac[:, None, :]) * bin_size.double()[:, None, None]
    exists = (torch.arange(g_max)[None] < grid[:, None])[:, None, :].expand(pos.shape)
    return pos, exists


def _axis(v: Tensor, size: int):
    """Bilinear neighbours and weights along one axis, as in mmcv's CPU kernel."""
    valid = (v >= -1.0) & (v <= size)
    v = v.clamp(min=0)
    lo = v.floor().long()
    at_end = lo >= size - 1
    lo = torch.where(at_end, torch.full_like(lo, size - 1), lo)
    hi = torch.where(at_end, lo, lo + 1)
    v = torch.where(at_end, lo.double(), v)
    frac = v - lo.double()
    return lo, hi, 1.0 - frac, frac, valid


def roi_meta(ext) -> dict:
    """The RoIAlign settings of an mmdet ``SingleRoIExtractor`` (for the model file)."""
    layer = ext.roi_layers[0]
    if getattr(layer, 'pool_mode', 'avg') != 'avg':
        raise ValueError(f'integer RoIAlign supports pool_mode="avg" only, got {layer.pool_mode!r}')
    size = layer.output_size
    return dict(output_size=list(size) if isinstance(size, (tuple, list)) else [size, size],
                sampling_ratio=int(layer.sampling_ratio), aligned=bool(layer.aligned),
                strides=[int(s) for s in ext.featmap_strides], finest_scale=int(ext.finest_scale))


__all__: List[str] = ['integer_roi_align', 'map_roi_levels', 'roi_meta', 'WEIGHT_BITS']
