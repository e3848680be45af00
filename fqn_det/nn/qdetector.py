"""The dataflow of a whole quantized detector, stage by stage.

mmdet's detectors route data between their children (``extract_feat``,
``rpn_head.predict``, ``roi_head``), and the fake-quantized forward keeps that
routing; each child's own dataflow is its ``walk``. :func:`walk_detector`
chains the children's walks for the builders that see the whole network at
once (integer graphs, input-quantizer linking, DFQ): one graph from the image
to the dense head outputs (and, for two-stage detectors, the integer features
RoIAlign reads), and a second from the RoI features to the box head outputs.
"""
from __future__ import annotations

from typing import Optional

from torch import nn

from .dataflow import Builder


class NoDataflowError(TypeError):
    """A child of a quantized detector has no ``walk`` (no dataflow description)."""


def _walker(det: nn.Module, attr: str) -> Optional[nn.Module]:
    m = getattr(det, attr, None)
    if m is not None and not callable(getattr(m, 'walk', None)):
        raise NoDataflowError(f'{attr} ({type(m).__name__}) of {type(det).__name__} has no walk(): '
                              'no integer export / DFQ / linking for it')
    return m


def walk_detector(det: nn.Module, b: Builder, roi_b: Optional[Builder] = None) -> bool:
    """Walk a quantized detector with builder ``b`` (and ``roi_b`` for the RoI stage).

    A backbone with no neck or heads (a feature extractor, e.g. under an ImageNet
    classifier) has its feature maps as the integer outputs (group ``'feats'``).

    Returns:
        bool: True for two-stage detectors (which use ``roi_b``).
    """
    feats = _walker(det, 'backbone').walk(b, 'image')
    if all(getattr(det, k, None) is None for k in ('neck', 'bbox_head', 'rpn_head', 'roi_head')):
        for f in feats:
            b.int_output(f, 'feats')
        return False
    neck = _walker(det, 'neck')  # None for C4 / DC5 models
    if neck is not None:
        feats = neck.walk(b, feats)
    head = _walker(det, 'bbox_head')
    if head is not None and getattr(det, 'roi_head', None) is None:
        head.walk(b, feats)
        return False
    rpn = _walker(det, 'rpn_head')
    roi_head = getattr(det, 'roi_head', None)
    if rpn is None or roi_head is None:
        raise NoDataflowError(f'no dataflow for detector {type(det).__name__}: expected a bbox_head '
                              '(single stage) or an rpn_head and roi_head (two stage)')
    rpn.walk(b, feats)
    ext = roi_head.bbox_roi_extractor
    for f in feats[:ext.num_inputs]:  # the integer features RoIAlign reads (as mmdet's x[:num_inputs])
        b.int_output(f, 'feats')
    roi_b = b if roi_b is None else roi_b
    x = roi_b.int_input('roi_feats', ext.out_quant)
    shared = _walker(roi_head, 'shared_head')
    if shared is not None:
        x = shared.walk(roi_b, x)
    _walker(roi_head, 'bbox_head').walk(roi_b, x)
    return True
