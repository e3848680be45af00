"""Export the quantized detector structure (ResNet, FPN, heads) as integer graphs.

Each function mirrors the ``forward`` of the corresponding quantized module,
emitting integer nodes instead of computing; tests check the two agree.
"""
from __future__ import annotations

from typing import Dict, List

from ..nn.qfpn import QFPN
from ..nn.qmobilenet import QMobileNetV2
from ..nn.qheads import QRetinaHead, QRPNHead
from ..nn.qresnet import QBottleneck, QResNet
from ..nn.qroi_head import QConvFCBBoxHead
from .builder import ExportError, GraphBuilder
from .graph import IntGraph
from .mobilenet import export_mobilenet


def export_resnet(b: GraphBuilder, net: QResNet) -> List[str]:
    x = b.input('image', net.input_quant)
    x = b.maxpool(net.maxpool, b.conv(net.conv1, x))
    outs = []
    for i, layer_name in enumerate(net.res_layers):
        for blk in getattr(net, layer_name):
            identity = x if blk.downsample is None else b.conv(blk.downsample, x)
            out = b.conv(blk.conv2, b.conv(blk.conv1, x))
            if isinstance(blk, QBottleneck):
                out = b.conv(blk.conv3, out)
            x = b.add(blk.add, out, identity)
        if i in net.out_indices:
            outs.append(x)
    return outs


def export_backbone(b, net) -> List[str]:
    if isinstance(net, QMobileNetV2):
        return export_mobilenet(b, net)
    if isinstance(net, QResNet):
        return export_resnet(b, net)
    raise ExportError(f'no integer export for backbone {type(net).__name__}')


def export_fpn(b: GraphBuilder, fpn: QFPN, inputs: List[str]) -> List[str]:
    laterals = [b.conv(conv, inputs[i + fpn.start_level]) for i, conv in enumerate(fpn.lateral_convs)]
    used = len(laterals)
    for i in range(used - 1, 0, -1):
        up = b.upsample(fpn.upsamples[i - 1], laterals[i], laterals[i - 1])
        laterals[i - 1] = b.add(fpn.adds[i - 1], laterals[i - 1], up)
    outs = [b.conv(fpn.fpn_convs[i], laterals[i]) for i in range(used)]
    if fpn.num_outs > used:
        if not fpn.add_extra_convs:
            for pool in fpn.extra_pools:
                outs.append(b.maxpool(pool, outs[-1]))
        else:
            src = {'on_input': lambda: inputs[fpn.backbone_end_level - 1],
                   'on_lateral': lambda: laterals[-1], 'on_output': lambda: outs[-1]}[fpn.add_extra_convs]()
            outs.append(b.conv(fpn.fpn_convs[used], src))
            for i in range(used + 1, fpn.num_outs):
                x = b.relu(outs[-1], f'neck.extra_relu.{i}') if fpn.relu_before_extra_convs else outs[-1]
                outs.append(b.conv(fpn.fpn_convs[i], x))
    return outs


def export_retina_head(b: GraphBuilder, head: QRetinaHead, feats: List[str]) -> None:
    for lvl, x in enumerate(feats):
        c = r = x
        for conv in head.cls_convs:
            c = b.conv(conv, c, lvl)
        for conv in head.reg_convs:
            r = b.conv(conv, r, lvl)
        b.output(b.conv(head.retina_cls, c, lvl), f'cls_score.{lvl}', 'cls_scores')
        b.output(b.conv(head.retina_reg, r, lvl), f'bbox_pred.{lvl}', 'bbox_preds')


def export_rpn_head(b: GraphBuilder, head: QRPNHead, feats: List[str]) -> None:
    for lvl, x in enumerate(feats):
        for conv in head.rpn_conv:
            x = b.conv(conv, x, lvl)
        b.output(b.conv(head.rpn_cls, x, lvl), f'rpn_cls_score.{lvl}', 'rpn_cls_scores')
        b.output(b.conv(head.rpn_reg, x, lvl), f'rpn_bbox_pred.{lvl}', 'rpn_bbox_preds')


def export_bbox_head(b: GraphBuilder, head: QConvFCBBoxHead, x: str) -> None:
    """Mirrors ``QConvFCBBoxHead.forward``: flatten wherever a linear meets a 4-D tensor."""
    for conv in head.shared_convs:
        x = b.conv(conv, x)
    flat = False
    if len(head.shared_fcs):
        x, flat = b.flatten(x, 'roi_head.bbox_head.flatten'), True
        for fc in head.shared_fcs:
            x = b.linear(fc, x)
    branches = {}
    for branch in ('cls', 'reg'):
        y, y_flat = x, flat
        for conv in getattr(head, f'{branch}_convs'):
            y, y_flat = b.conv(conv, y), False
        if not y_flat:
            y = b.flatten(y, f'roi_head.bbox_head.{branch}_flatten')
        for fc in getattr(head, f'{branch}_fcs'):
            y = b.linear(fc, y)
        branches[branch] = y
    b.output(b.linear(head.fc_cls, branches['cls']), 'cls_score', 'cls_score')
    b.output(b.linear(head.fc_reg, branches['reg']), 'bbox_pred', 'bbox_pred')


def walk_detector(det, b, roi_b=None) -> bool:
    """Walk a quantized detector with builder ``b`` (and ``roi_b`` for the RoI stage).

    Returns True for two-stage detectors (which use ``roi_b``). A model with a
    backbone and no neck or heads (a feature extractor, e.g. under an ImageNet
    classifier) has the backbone's feature maps as its integer outputs.
    """
    feats = export_backbone(b, det.backbone)
    if all(getattr(det, k, None) is None for k in ('neck', 'bbox_head', 'rpn_head', 'roi_head')):
        for f in feats:
            b.int_output(f, 'feats')
        return False
    feats = export_fpn(b, det.neck, feats)
    if isinstance(getattr(det, 'bbox_head', None), QRetinaHead):
        export_retina_head(b, det.bbox_head, feats)
        return False
    if isinstance(getattr(det, 'rpn_head', None), QRPNHead):
        export_rpn_head(b, det.rpn_head, feats)
        ext = det.roi_head.bbox_roi_extractor
        for f in feats[:ext.num_inputs]:  # the integer features RoIAlign reads (as mmdet's x[:num_inputs])
            b.int_output(f, 'feats')
        export_bbox_head(roi_b, det.roi_head.bbox_head, roi_b.int_input('roi_feats', ext.out_quant))
        return True
    raise ExportError(f'no integer export for detector {type(det).__name__}')


def build_graphs(model) -> Dict[str, IntGraph]:
    """Integer graphs of a calibrated :class:`QuantizedDetector`.

    Returns:
        dict: ``{'features': graph}`` for single-stage detectors (image -> head
        outputs); two-stage detectors add integer FPN feature outputs to it and a
        ``'roi'`` graph (RoI features -> box head outputs).
    """
    b, rb = GraphBuilder(), GraphBuilder()
    two_stage = walk_detector(model.detector, b, rb)
    return {'features': b.g, 'roi': rb.g} if two_stage else {'features': b.g}


class _LinkBuilder:
    """Walks like :class:`GraphBuilder`; a "tensor" is the quantizer that produced it."""

    def input(self, name, q):
        return q

    int_input = input

    def _link(self, m, x, site):
        while len(m.in_quants) <= site:
            m.in_quants.append(None)
        m.in_quants[site] = x
        return m.out_quant[site]

    def conv(self, m, x, site=0):
        return self._link(m, x, site)

    linear = conv

    def add(self, m, a, b, site=0):
        return m.out_quant[site]

    def maxpool(self, m, x, site=0):
        return m.out_quant[site]

    def upsample(self, m, x, like, site=0):
        return m.out_quant[site]

    def relu(self, x, name):
        return x

    flatten = relu

    def output(self, x, name, group=None):
        return name

    def int_output(self, x, group):
        return None


def link_input_quantizers(det) -> None:
    """Give every quantized conv/linear the quantizer that feeds it at each call site.

    Used to quantize biases to the int32 grid ``s_in * s_w`` of integer inference,
    so the fake-quantized model computes what the integer model computes.
    """
    b = _LinkBuilder()
    walk_detector(det, b, b)
