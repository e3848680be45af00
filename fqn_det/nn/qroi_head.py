"""Quantized counterparts of mmdet's RoI feature extractor, box heads and shared ResLayer head.

RoIAlign reads quantized FPN features and its output is quantized; the FC
box head's linears have quantized weights and outputs, including the final
classification logits and box deltas.
"""
from __future__ import annotations

from typing import Optional, Tuple

from mmdet.models.roi_heads.bbox_heads import BBoxHead, ConvFCBBoxHead
from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
from mmdet.models.roi_heads.shared_heads import ResLayer
from torch import Tensor, nn

from .builder import QBuilder, UnsupportedModuleError, clone_as
from .dataflow import RUN, Builder, walk_sequential
from .qconv import QAvgPool2d
from .qresnet import quantize_res_layer


class QSingleRoIExtractor(SingleRoIExtractor):
    """SingleRoIExtractor whose RoIAlign output is quantized."""

    @classmethod
    def from_float(cls, ext: SingleRoIExtractor, qb: QBuilder, name: str) -> 'QSingleRoIExtractor':
        if list(ext.parameters()):
            raise UnsupportedModuleError(name, ext, 'RoI extractors with parameters are not supported')
        q = clone_as(ext, cls)
        q.out_quant = qb.act(f'{name}.out_quant')[0]
        return q

    def forward(self, feats: Tuple[Tensor], rois: Tensor,
                roi_scale_factor: Optional[float] = None) -> Tensor:
        return self.out_quant(super().forward(feats, rois, roi_scale_factor))


class QConvFCBBoxHead(ConvFCBBoxHead):
    """ConvFCBBoxHead (e.g. Shared2FCBBoxHead) with quantized convs, FCs and outputs."""

    @classmethod
    def from_float(cls, head: ConvFCBBoxHead, qb: QBuilder, name: str) -> 'QConvFCBBoxHead':
        if head.with_avg_pool:
            raise UnsupportedModuleError(name, head, 'with_avg_pool is not supported')
        q = clone_as(head, cls)
        q.q_name = name
        for branch in ('shared', 'cls', 'reg'):
            convs = getattr(head, f'{branch}_convs')
            fcs = getattr(head, f'{branch}_fcs')
            setattr(q, f'{branch}_convs', nn.ModuleList(
                qb.conv_module(m, f'{name}.{branch}_convs.{i}') for i, m in enumerate(convs)))
            setattr(q, f'{branch}_fcs', nn.ModuleList(
                qb.linear(m, True, f'{name}.{branch}_fcs.{i}') for i, m in enumerate(fcs)))
        if head.with_cls:
            q.fc_cls = qb.linear(head.fc_cls, False, f'{name}.fc_cls', output=True)
        if head.with_reg:
            q.fc_reg = qb.linear(head.fc_reg, False, f'{name}.fc_reg', output=True)
        return q

    def walk(self, b: Builder, x) -> tuple:
        """Flatten wherever a linear meets a 4-D tensor (RoI features or conv outputs)."""
        for conv in self.shared_convs:
            x = b.conv(conv, x)
        flat = False
        if len(self.shared_fcs):
            x, flat = b.flatten(x, f'{self.q_name}.flatten'), True
            for fc in self.shared_fcs:
                x = b.linear(fc, x)
        branches = {}
        for branch in ('cls', 'reg'):
            y, y_flat = x, flat
            for conv in getattr(self, f'{branch}_convs'):
                y, y_flat = b.conv(conv, y), False
            if not y_flat:
                y = b.flatten(y, f'{self.q_name}.{branch}_flatten')
            for fc in getattr(self, f'{branch}_fcs'):
                y = b.linear(fc, y)
            branches[branch] = y
        return _head_outputs(self, b, branches['cls'], branches['reg'])

    def forward(self, x: Tensor) -> tuple:
        return self.walk(RUN, x)


def _head_outputs(head, b: Builder, x_cls, x_reg) -> tuple:
    cls_score = b.output(b.linear(head.fc_cls, x_cls), 'cls_score', 'cls_score') if head.with_cls else None
    bbox_pred = b.output(b.linear(head.fc_reg, x_reg), 'bbox_pred', 'bbox_pred') if head.with_reg else None
    return cls_score, bbox_pred


class QBBoxHead(BBoxHead):
    """mmdet's plain BBoxHead (C4 models): optional average pool, then the two output linears."""

    @classmethod
    def from_float(cls, head: BBoxHead, qb: QBuilder, name: str) -> 'QBBoxHead':
        q = clone_as(head, cls)
        q.q_name = name
        if head.with_avg_pool:
            q.avg_pool = QAvgPool2d(head.roi_feat_size, head.in_channels, qb.act(f'{name}.avg_pool'))
        if head.with_cls:
            q.fc_cls = qb.linear(head.fc_cls, False, f'{name}.fc_cls', output=True)
        if head.with_reg:
            q.fc_reg = qb.linear(head.fc_reg, False, f'{name}.fc_reg', output=True)
        return q

    def walk(self, b: Builder, x) -> tuple:
        if self.with_avg_pool:
            x = b.avgpool(self.avg_pool, x)
        x = b.flatten(x, f'{self.q_name}.flatten')
        return _head_outputs(self, b, x, x)

    def forward(self, x: Tensor) -> tuple:
        return self.walk(RUN, x)


class QResLayerHead(ResLayer):
    """mmdet's ``ResLayer`` shared RoI head (the C4 models' last ResNet stage) quantized."""

    @classmethod
    def from_float(cls, head: ResLayer, qb: QBuilder, name: str) -> 'QResLayerHead':
        q = clone_as(head, cls)
        layer_name = f'layer{head.stage + 1}'
        setattr(q, layer_name, quantize_res_layer(getattr(head, layer_name), qb, f'{name}.{layer_name}'))
        return q

    def walk(self, b: Builder, x):
        return walk_sequential(b, getattr(self, f'layer{self.stage + 1}'), x)

    def forward(self, x: Tensor) -> Tensor:
        return self.walk(RUN, x)

    def train(self, mode: bool = True) -> 'QResLayerHead':
        # BN is frozen by QConv2d itself (norm_eval has nothing left to do).
        return nn.Module.train(self, mode)
