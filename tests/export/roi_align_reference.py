"""The per-RoI integer RoIAlign (one Python iteration per RoI): the reference for the batched one."""
from typing import Sequence

import torch
from torch import Tensor

from fqn_det.quant.fixed_point import quantize_multiplier
from fqn_det.export.graph import TensorQ
from fqn_det.export.roi_align import WEIGHT_BITS, _round_div, _sample_grid, map_roi_levels


def roi_align_one_by_one(feats: Sequence[Tensor], feat_q: Sequence[TensorQ], rois: Tensor, out_q: TensorQ,
                      strides: Sequence[int], output_size: Sequence[int], sampling_ratio: int = 0,
                      aligned: bool = True, finest_scale: int = 56) -> Tensor:
    """Integer RoI features, one RoI at a time.

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
