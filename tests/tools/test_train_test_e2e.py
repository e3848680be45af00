"""tools/train.py -> checkpoint -> --resume -> tools/test.py, int4 RetinaNet and Faster R-CNN.

Runs the real command-line tools in subprocesses on a generated COCO-format
dataset with small widths and images.
"""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fqn_det.datasets import generate_synthetic_coco
from fqn_det.utils.checkpoint import allow_mmengine_checkpoints

ROOT = Path(__file__).resolve().parents[2]
IMG = 96


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp('e2e') / 'data'
    generate_synthetic_coco(out, num_train=12, num_val=6, img_size=IMG, seed=3, progress=False)
    return out


def data_opts(data: Path):
    opts = [f'train_dataloader.dataset.data_root={data}/', f'val_dataloader.dataset.data_root={data}/',
            f'test_dataloader.dataset.data_root={data}/',
            f'val_evaluator.ann_file={data}/annotations/instances_val.json',
            f'test_evaluator.ann_file={data}/annotations/instances_val.json',
            'train_dataloader.batch_size=4', f'train_dataloader.dataset.pipeline.2.scale=({IMG},{IMG})',
            f'val_dataloader.dataset.pipeline.1.scale=({IMG},{IMG})',
            f'test_dataloader.dataset.pipeline.1.scale=({IMG},{IMG})']
    for split in ('train', 'val', 'test'):
        opts += [f'{split}_dataloader.num_workers=0', f'{split}_dataloader.persistent_workers=False']
    return opts


def model_opts(kind: str, p: str):
    """Narrow the reference detectors further; ``p`` is 'model.' or 'model.detector.'."""
    o = [f'{p}backbone.base_channels=8', f'{p}neck.in_channels=[8,16,32,64]', f'{p}neck.out_channels=16']
    if kind == 'retina':
        return o + [f'{p}bbox_head.in_channels=16', f'{p}bbox_head.feat_channels=16',
                    f'{p}test_cfg.score_thr=0.0']
    return o + [f'{p}rpn_head.in_channels=16', f'{p}rpn_head.feat_channels=16',
                f'{p}roi_head.bbox_roi_extractor.out_channels=16', f'{p}roi_head.bbox_head.in_channels=16',
                f'{p}roi_head.bbox_head.fc_out_channels=32', f'{p}train_cfg.rpn_proposal.max_per_img=64',
                f'{p}train_cfg.rcnn.sampler.num=32', f'{p}test_cfg.rpn.max_per_img=32',
                f'{p}test_cfg.rcnn.score_thr=0.0']


def tool(name: str, *args) -> str:
    cmd = [sys.executable, str(ROOT / 'tools' / name), *map(str, args)]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    out = res.stdout + res.stderr
    assert res.returncode == 0, f'{name} failed:\n{out[-4000:]}'
    return out


NAMES = {'retina': 'retinanet_r18-tiny_fpn', 'faster': 'faster-rcnn_r18-tiny_fpn'}


@pytest.mark.parametrize('kind', ['retina', 'faster'])
def test_train_checkpoint_resume_test(kind, data, tmp_path):
    cfg_dir = ROOT / 'configs' / 'fqn'
    fp_cfg, q_cfg = cfg_dir / f'{NAMES[kind]}_12e_synthetic.py', cfg_dir / f'{NAMES[kind]}_fqn-w4a4_2e_synthetic.py'
    d = data_opts(data)
    # 1. a full-precision detector (an ordinary mmdet checkpoint)
    tool('train.py', fp_cfg, '--work-dir', tmp_path / 'fp', '--cfg-options', *d,
         *model_opts(kind, 'model.'), 'train_cfg.max_epochs=1', 'train_cfg.val_interval=5',
         'default_hooks.checkpoint.interval=1')
    fp_ckpt = tmp_path / 'fp' / 'epoch_1.pth'
    assert fp_ckpt.is_file()
    # 2. FQN int4: calibration on n=2 batches, then 2 epochs of QAT, bits/n/gamma via --cfg-options
    q_opts = [*d, *model_opts(kind, 'model.detector.'), f'load_from={fp_ckpt}',
              'model.quant_cfg.calib.num_batches=2', 'model.quant_cfg.calib.gamma=0.99',
              'model.quant_cfg.weight.bits=4', 'model.quant_cfg.act.bits=4',
              'train_cfg.val_interval=5']
    out = tool('train.py', q_cfg, '--work-dir', tmp_path / 'q', '--cfg-options', *q_opts)
    assert 'FQN calibration:' in out and 'from 2 batches (gamma=0.99)' in out
    assert (tmp_path / 'q' / 'calibration_ranges.json').is_file()
    e1, e2 = tmp_path / 'q' / 'epoch_1.pth', tmp_path / 'q' / 'epoch_2.pth'
    assert e1.is_file() and e2.is_file()
    allow_mmengine_checkpoints()  # mmengine checkpoints under torch's weights_only loader
    # frozen BN: the fine-tuned checkpoint holds the FP checkpoint's BN tensors unchanged
    fp_sd = torch.load(fp_ckpt, map_location='cpu')['state_dict']
    q_sd = torch.load(e2, map_location='cpu')['state_dict']
    bn_fp = {k: v for k, v in fp_sd.items() if k.startswith('backbone.layer1.0.bn1.')}
    assert bn_fp
    for k, v in bn_fp.items():
        qk = 'detector.backbone.layer1.0.conv1.bn.' + k.rsplit('.', 1)[1]
        assert torch.equal(q_sd[qk], v), qk
    assert not torch.equal(q_sd['detector.backbone.layer1.0.conv1.conv.weight'],
                           fp_sd['backbone.layer1.0.conv1.weight'])
    assert int(q_sd['calibrated']) == 1
    # 3. resume from the mid-run checkpoint: continues, does not recalibrate
    out = tool('train.py', q_cfg, '--work-dir', tmp_path / 'q', '--resume', e1, '--cfg-options', *q_opts)
    assert 'resumed epoch: 1' in out
    assert 'already calibrated' in out and 'from 2 batches' not in out
    if kind == 'retina':
        # a loss that becomes NaN stops training at once, naming the iteration; no
        # checkpoint is written from the broken state
        before = e2.read_bytes()
        res = subprocess.run([sys.executable, str(ROOT / 'tools' / 'train.py'), str(q_cfg), '--work-dir',
                              str(tmp_path / 'q'), '--resume', str(e1), '--cfg-options', *q_opts,
                              'model.detector.bbox_head.loss_cls.loss_weight=nan'],
                             cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert res.returncode != 0
        assert 'NonFiniteLossError' in res.stderr, res.stderr[-800:]
        assert re.search(r'non-finite loss at iteration \d+ \(epoch 2\)', res.stderr)
        assert e2.read_bytes() == before
    # 4. COCO evaluation of the fine-tuned int4 checkpoint
    test_opts = ['--cfg-options', *d, *model_opts(kind, 'model.detector.')]
    out = tool('test.py', q_cfg, e2, '--work-dir', tmp_path / 'test', *test_opts)
    assert 'coco/bbox_mAP:' in out and 'Average Precision' in out
    fq_map = coco_map(out)
    # 5. integer export, evaluated with the integer engine and with onnxruntime
    out = tool('export.py', q_cfg, e2, '--out', tmp_path / 'exp', *test_opts)
    assert 'non-integer ops between input quantization and head outputs: none' in out
    for exported in ('model.fqnint', 'model.onnx'):
        out = tool('test.py', q_cfg, tmp_path / 'exp' / exported, '--work-dir', tmp_path / 'test', *test_opts)
        assert abs(coco_map(out) - fq_map) <= 0.1, (exported, coco_map(out), fq_map)
    # the opset-17 ONNX (8-bit weight containers, for runtimes without INT4): the same mAP
    tool('export.py', q_cfg, e2, '--out', tmp_path / 'exp17', '--onnx-opset', '17', *test_opts)
    assert 'ONNX opset 17 (8-bit weight containers)' in (tmp_path / 'exp17' / 'report.md').read_text()
    out = tool('test.py', q_cfg, tmp_path / 'exp17' / 'model.onnx', '--work-dir', tmp_path / 'test', *test_opts)
    assert abs(coco_map(out) - fq_map) <= 0.1, ('opset 17', coco_map(out), fq_map)
    # exporting a float (never calibrated) checkpoint is refused, nothing written
    res = subprocess.run([sys.executable, str(ROOT / 'tools' / 'export.py'), str(q_cfg), str(fp_ckpt), '--out',
                          str(tmp_path / 'bad'), *test_opts], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode != 0 and 'never calibrated' in res.stderr
    assert not (tmp_path / 'bad').exists()
    # a checkpoint of the other detector: a mismatch error naming keys, nothing written
    other = cfg_dir / f"{NAMES['faster' if kind == 'retina' else 'retina']}_fqn-w4a4_2e_synthetic.py"
    res = subprocess.run([sys.executable, str(ROOT / 'tools' / 'export.py'), str(other), str(e2), '--out',
                          str(tmp_path / 'bad')], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode != 0 and 'CheckpointMismatchError' in res.stderr and 'does not match' in res.stderr
    assert not (tmp_path / 'bad').exists()


def coco_map(out: str) -> float:
    m = re.findall(r'coco/bbox_mAP: (-?[0-9.]+)', out)
    assert m, out[-2000:]
    return float(m[-1])
