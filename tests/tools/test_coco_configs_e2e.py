"""The shipped R50 COCO configs train, calibrate, checkpoint and test with overrides only.

``configs/fqn/retinanet_r50_fpn_fqn-w4a4_3e_coco.py`` / ``configs/fqn/faster-rcnn_r50_fpn_fqn-w4a4_3e_coco.py``
unchanged, pointed
by ``--cfg-options`` at a generated COCO-format dataset (its 5 classes, small
images) and at a local full-precision checkpoint instead of the official URL.
"""
import copy
import sys
from pathlib import Path

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import Config

from fqn_det.datasets import generate_synthetic_coco

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_train_test_e2e import ROOT, tool  # noqa: E402

CLASSES = "('rectangle','ellipse','triangle','cross','ring')"
IMG = 64


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp('coco') / 'data'
    generate_synthetic_coco(out, num_train=4, num_val=2, img_size=IMG, seed=5, progress=False)
    return out


@pytest.mark.parametrize('name, head, thr', [
    ('retinanet_r50_fpn_fqn-w4a4_3e_coco', 'bbox_head', 'test_cfg.score_thr'),
    ('faster-rcnn_r50_fpn_fqn-w4a4_3e_coco', 'roi_head.bbox_head', 'test_cfg.rcnn.score_thr')])
def test_coco_config_with_overrides(name, head, thr, data, tmp_path):
    cfg_path = ROOT / 'configs' / 'fqn' / f'{name}.py'
    # an ordinary full-precision mmdet checkpoint of the same detector
    det_cfg = copy.deepcopy(Config.fromfile(str(cfg_path)).model.detector)
    obj = det_cfg
    for part in head.split('.'):
        obj = obj[part]
    obj['num_classes'] = 5
    torch.manual_seed(0)
    float_det = MODELS.build(det_cfg)
    float_det.init_weights()
    fp_ckpt = tmp_path / 'fp32.pth'
    torch.save({'state_dict': float_det.state_dict(), 'meta': {}}, fp_ckpt)

    # score_thr 0: an untrained detector still returns boxes, so COCO mAP is computed
    opts = [f'model.detector.{head}.num_classes=5', f'model.detector.{thr}=0.0', f'load_from={fp_ckpt}',
            'model.quant_cfg.calib.num_batches=2', 'train_cfg.max_epochs=1', 'train_cfg.val_interval=5',
            'train_dataloader.batch_size=2', f'val_evaluator.ann_file={data}/annotations/instances_val.json',
            f'test_evaluator.ann_file={data}/annotations/instances_val.json',
            f'train_dataloader.dataset.pipeline.2.scale=({IMG},{IMG})',
            f'val_dataloader.dataset.pipeline.1.scale=({IMG},{IMG})',
            f'test_dataloader.dataset.pipeline.1.scale=({IMG},{IMG})']
    for split, ann, img in (('train', 'instances_train', 'train/'), ('val', 'instances_val', 'val/'),
                            ('test', 'instances_val', 'val/')):
        opts += [f'{split}_dataloader.dataset.data_root={data}/',
                 f'{split}_dataloader.dataset.ann_file=annotations/{ann}.json',
                 f'{split}_dataloader.dataset.data_prefix.img={img}',
                 f'{split}_dataloader.dataset.metainfo.classes={CLASSES}',
                 f'{split}_dataloader.num_workers=0', f'{split}_dataloader.persistent_workers=False']
    out = tool('train.py', cfg_path, '--work-dir', tmp_path / 'q', '--cfg-options', *opts)
    assert 'FQN calibration:' in out and 'from 2 batches' in out
    ckpt = tmp_path / 'q' / 'epoch_1.pth'
    assert ckpt.is_file()
    out = tool('test.py', cfg_path, ckpt, '--work-dir', tmp_path / 't', '--cfg-options', *opts)
    assert 'coco/bbox_mAP:' in out
