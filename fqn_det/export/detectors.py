"""Integer graphs of a quantized detector: its dataflow walked with :class:`GraphBuilder`.

The dataflow itself is each block's ``walk`` (:mod:`fqn_det.nn.dataflow`), the
same description the fake-quantized forward runs, so the two cannot drift apart.
"""
from __future__ import annotations

from typing import Dict

from ..nn.link import link_input_quantizers
from ..nn.qdetector import walk_detector
from .builder import GraphBuilder
from .graph import IntGraph

__all__ = ['build_graphs', 'walk_detector', 'link_input_quantizers']


def build_graphs(model) -> Dict[str, IntGraph]:
    """Integer graphs of a calibrated :class:`QuantizedDetector`.

    Returns:
        dict: ``{'features': graph}`` for single-stage detectors (image -> head
        outputs); two-stage detectors add integer backbone/neck feature outputs to it
        and a ``'roi'`` graph (RoI features -> shared head, if any -> box head outputs).
    """
    b, rb = GraphBuilder(), GraphBuilder()
    two_stage = walk_detector(model.detector, b, rb)
    return {'features': b.g, 'roi': rb.g} if two_stage else {'features': b.g}
