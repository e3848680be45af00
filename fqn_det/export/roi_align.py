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
from torch import Tensor

from .fixed_point import quantize_multiplier
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
        fc = f - tq.zero_point  # centred integers
        for r in idx.tolist():
            out[r] = out_q.zero_point + _roi(fc, rois[r], 1.0 / stride, out_h, out_w, sampling_ratio,
                                             aligned, m0, n)
    return out.clamp_(out_q.qmin, out_q.qmax)


def _roi(fc: Tensor, roi: Tensor, scale: float, out_h: int, out_w: int, sampling_ratio: int,
         aligned: bool, m0: int, n: int) -> Tensor:
    _, c, h, w = fc.shape
    x1, y1, bh, bw, gh, gw = _sample_grid(roi[None], scale, out_h, out_w, sampling_ratio, aligned)
    gh, gw = int(gh), int(gw)
    count = max(gh * gw, 1)
    iy = (torch.arange(gh, dtype=torch.float64) + 0.5) / max(gh, 1)
    ix = (torch.arange(gw, dtype=torch.float64) + 0.5) / max(gw, 1)
    ys = float(y1) + (torch.arange(out_h, dtype=torch.float64)[:, None] + iy[None]) * float(bh)  # (out_h, gh)
    xs = float(x1) + (torch.arange(out_w, dtype=torch.float64)[:, None] + ix[None]) * float(bw)  # (out_w, gw)
    ylo, yhi, wy0, wy1, vy = _axis(ys.reshape(-1), h)
    xlo, xhi, wx0, wx1, vx = _axis(xs.reshape(-1), w)
    img = fc[int(roi[0])]  # (C, H, W) int64
    acc = torch.zeros(c, ylo.numel(), xlo.numel(), dtype=torch.int64)
    for yi, wy in ((ylo, wy0), (yhi, wy1)):
        for xi, wx in ((xlo, wx0), (xhi, wx1)):
            wgt = torch.round(wy[:, None] * wx[None, :] * (1 << WEIGHT_BITS)).long()
            wgt = wgt * (vy[:, None] & vx[None, :])
            acc += img[:, yi][:, :, xi] * wgt[None]
    acc = acc.reshape(c, out_h, gh, out_w, gw).sum((2, 4))
    den = torch.tensor((1 << n) * count if n < 62 else 1 << 62, dtype=torch.int64)
    return _round_div(acc * m0, den)


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
