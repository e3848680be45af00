"""Quantized counterparts of mmdet's RoI feature extractor and FC box heads.

RoIAlign reads quantized FPN features and its output is quantized; the FC
box head's linears have quantized weights and outputs, including the final
classification logits and box deltas.
"""
from __future__ import annotations

from typing import Optional, Tuple

from mmdet.models.roi_heads.bbox_heads import ConvFCBBoxHead
from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
from torch import Tensor, nn

from .builder import QBuilder, UnsupportedModuleError, clone_as


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

    def forward(self, x: Tensor) -> tuple:
        for conv in self.shared_convs:
            x = conv(x)
        if len(self.shared_fcs):
            x = x.flatten(1)
            for fc in self.shared_fcs:
                x = fc(x)
        x_cls = x_reg = x
        for conv in self.cls_convs:
            x_cls = conv(x_cls)
        x_cls = x_cls.flatten(1) if x_cls.dim() > 2 else x_cls
        for fc in self.cls_fcs:
            x_cls = fc(x_cls)
        for conv in self.reg_convs:
            x_reg = conv(x_reg)
        x_reg = x_reg.flatten(1) if x_reg.dim() > 2 else x_reg
        for fc in self.reg_fcs:
            x_reg = fc(x_reg)
        cls_score = self.fc_cls(x_cls) if self.with_cls else None
        bbox_pred = self.fc_reg(x_reg) if self.with_reg else None
        return cls_score, bbox_pred
