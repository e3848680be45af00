"""Evaluate an exported integer model with mmdet's decoding, NMS and metrics.

``tools/test.py CONFIG model.fqnint`` (integer engine) or ``... model.onnx``
(onnxruntime) swaps the config's model for this one.
"""
from __future__ import annotations

from typing import List, Optional

from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import bbox2roi
from mmengine.config import ConfigDict
from mmengine.model import BaseModel
from torch import Tensor

from ..export.backends import load_backend
from ..export.roi_align import integer_roi_align


class DetectorKindMismatchError(ValueError):
    """An exported model evaluated with the config of another kind of detector."""


def check_detector_kind(model_file, meta: dict, config_detector: Optional[str]) -> None:
    """The exported detector's type must be the config's (its test_cfg and heads are used for decoding)."""
    exported = (meta.get('detector') or {}).get('type')
    if config_detector is not None and exported != config_detector:
        raise DetectorKindMismatchError(
            f'{model_file} was exported from a {exported} but the config describes a {config_detector}: '
            'evaluate it with the config it was exported with')


def head_outputs(head, groups: dict, grp, prefix: str) -> list:
    """A dense head's dequantized outputs in ``predict_by_feat``'s order (groups named ``prefix``...).

    ``cls_scores`` and ``bbox_preds``, and FCOS's ``centernesses``, whose box
    distances then get FCOS's own decoding (``exp``, or ReLU times the stride).
    """
    names = [f'{prefix}{k}' for k in ('cls_scores', 'bbox_preds', 'centernesses') if f'{prefix}{k}' in groups]
    outs = [grp(n) for n in names]
    from mmdet.models.dense_heads import FCOSHead
    if isinstance(head, FCOSHead):
        from ..nn.qfcos import fcos_bbox_outputs
        outs[1] = fcos_bbox_outputs(head, outs[1], training=False)
    return outs


@MODELS.register_module()
class IntegerDetector(BaseModel):
    """An exported fqn_det model behind mmdet's ``predict`` interface.

    Args:
        model_file (str): ``.fqnint`` file, its export directory, or ``model.onnx``.
        backend (str): ``'engine'`` (integer engine) or ``'onnxruntime'``.
        test_cfg (dict, optional): Decoding/NMS settings replacing the exported ones.
        config_detector (str, optional): The detector type of the running config; an
            exported model of another kind is refused.
    """

    def __init__(self, model_file: str, backend: str = 'engine', test_cfg: Optional[dict] = None,
                 init_cfg=None, config_detector: Optional[str] = None) -> None:
        runner, meta = load_backend(model_file, backend)
        check_detector_kind(model_file, meta, config_detector)
        det_cfg = ConfigDict(meta['detector'])
        if test_cfg is not None:  # post-processing from the running config (e.g. --cfg-options)
            det_cfg.test_cfg = ConfigDict(test_cfg)
        det = MODELS.build(det_cfg)  # heads for decoding/NMS; no weights are used
        super().__init__(data_preprocessor=det.data_preprocessor, init_cfg=init_cfg)
        self.__dict__['det'] = det
        self.runner, self.meta, self.backend = runner, meta, backend

    def forward(self, inputs: Tensor, data_samples: Optional[List[DetDataSample]] = None,
                mode: str = 'predict'):
        if mode != 'predict':
            raise ValueError(f'an exported integer model only predicts (mode={mode!r})')
        metas = [s.metainfo for s in data_samples]
        out = self.runner.run('features', {'image': inputs})
        g = self.runner.graphs['features']
        grp = lambda name: [out[k] for k in g.output_groups[name]]  # noqa: E731
        det = self.det
        if not self.meta['two_stage']:
            results = det.bbox_head.predict_by_feat(*head_outputs(det.bbox_head, g.output_groups, grp, ''),
                                                    batch_img_metas=metas, rescale=True)
            return det.add_pred_to_datasample(data_samples, results)
        proposals = det.rpn_head.predict_by_feat(*head_outputs(det.rpn_head, g.output_groups, grp, 'rpn_'),
                                                 batch_img_metas=metas, cfg=det.test_cfg.rpn, rescale=False)
        rois = bbox2roi([p.bboxes for p in proposals])
        ra, rg = self.meta['roi_align'], self.runner.graphs['roi']
        feat_names = g.output_groups['feats']
        roi_feats = integer_roi_align([out[k] for k in feat_names], [g.tensors[k] for k in feat_names],
                                      rois, rg.tensors['roi_feats'], ra['strides'], ra['output_size'],
                                      ra['sampling_ratio'], ra['aligned'], ra['finest_scale'])
        r = self.runner.run('roi', {'roi_feats': roi_feats})
        cls_score, bbox_pred = r['cls_score'], r['bbox_pred']
        n = tuple(len(p) for p in proposals)
        results = det.roi_head.bbox_head.predict_by_feat(
            rois=rois.split(n, 0), cls_scores=cls_score.split(n, 0), bbox_preds=bbox_pred.split(n, 0),
            batch_img_metas=metas, rcnn_test_cfg=det.test_cfg.rcnn, rescale=True)
        return det.add_pred_to_datasample(data_samples, results)

