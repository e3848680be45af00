"""Batched integer RoIAlign == the one-RoI-at-a-time definition, bit for bit."""
import pytest
import torch

from fqn_det.export import roi_align
from fqn_det.export.graph import TensorQ
from fqn_det.export.roi_align import integer_roi_align

from roi_align_reference import roi_align_one_by_one


def _case(n_rois=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    strides = [4, 8, 16, 32]
    feats = [torch.randint(0, 16, (2, 5, 256 // s, 320 // s), generator=g) for s in strides]
    tqs = [TensorQ(0.05 * (i + 1), 3 + i, 0, 15) for i in range(4)]
    xy = torch.rand(n_rois, 2, generator=g) * 260 - 20
    wh = torch.exp(torch.rand(n_rois, 2, generator=g) * 6.0) + 0.5  # sub-pixel .. 400 px: every level
    rois = torch.cat([torch.randint(0, 2, (n_rois, 1), generator=g).float(), xy, xy + wh], 1)
    rois[:4, 1:] = torch.tensor([-30.0, -10.0, 400.0, 300.0])  # partly outside the image
    rois[4, 3:] = rois[4, 1:3]  # empty box
    return feats, tqs, rois, TensorQ(0.12, 2, 0, 15), strides


@pytest.mark.parametrize('sampling_ratio,aligned', [(0, True), (2, True), (0, False)])
def test_batched_roi_align_equals_the_per_roi_definition(sampling_ratio, aligned):
    feats, tqs, rois, out_q, strides = _case()
    got = integer_roi_align(feats, tqs, rois, out_q, strides, (7, 7), sampling_ratio, aligned)
    ref = roi_align_one_by_one(feats, tqs, rois, out_q, strides, (7, 7), sampling_ratio, aligned)
    assert torch.equal(got, ref)


def test_chunking_gives_the_same_integers(monkeypatch):
    feats, tqs, rois, out_q, strides = _case(60, seed=3)
    whole = integer_roi_align(feats, tqs, rois, out_q, strides, (7, 7))
    monkeypatch.setattr(roi_align, 'CHUNK_ROIS', 3)  # a few RoIs per chunk
    assert torch.equal(integer_roi_align(feats, tqs, rois, out_q, strides, (7, 7)), whole)


def test_no_rois():
    feats, tqs, _, out_q, strides = _case(10)
    assert integer_roi_align(feats, tqs, torch.zeros(0, 5), out_q, strides, (7, 7)).shape == (0, 5, 7, 7)
