"""RetinaNet-MobileNetV2 and SSDLite through the tools: train -> FQN QAT (calibration) -> resume -> test ->
export -> integer engine and onnxruntime; tools/ptq.py with DFQ writes what it could not equalize."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_train_test_e2e import IMG, ROOT, coco_map, data_opts, tool  # noqa: E402

from fqn_det.datasets import generate_synthetic_coco  # noqa: E402

CFG = ROOT / 'configs' / 'fqn'
FP, Q = CFG / 'retinanet_mobilenetv2_fpn_12e_synthetic.py', CFG / 'retinanet_mobilenetv2_fpn_fqn-w4a4_2e_synthetic.py'
SSD_FP, SSD_Q = CFG / 'ssdlite_mobilenetv2_12e_synthetic.py', CFG / 'ssdlite_mobilenetv2_fqn-w4a4_2e_synthetic.py'
SSD_IMG = 128  # the SSDLite configs' anchor input size


def narrow(p):
    return [f'{p}backbone.widen_factor=0.25', f'{p}neck.in_channels=[8,24,80]', f'{p}neck.out_channels=16',
            f'{p}bbox_head.in_channels=16', f'{p}bbox_head.feat_channels=16', f'{p}test_cfg.score_thr=0.0']


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp('e2e_mbv2') / 'data'
    generate_synthetic_coco(out, num_train=8, num_val=4, img_size=IMG, seed=3, progress=False)
    return out


def check_exported(cfg, fq_map: float, tmp_path, test_opts) -> None:
    """The integer engine gives the fake-quantized model's mAP exactly (the same head-output integers,
    evaluation being integer-exact); onnxruntime within 0.01 (its own requantization kernels)."""
    engine = coco_map(tool('test.py', cfg, tmp_path / 'exp' / 'model.fqnint', '--work-dir', tmp_path / 't',
                           *test_opts))
    assert engine == fq_map, (engine, fq_map)
    ort = coco_map(tool('test.py', cfg, tmp_path / 'exp' / 'model.onnx', '--work-dir', tmp_path / 't', *test_opts))
    assert abs(ort - fq_map) <= 0.01, (ort, fq_map)


def train_resume_test_export_ptq(fp_cfg, q_cfg, narrow_opts, d, tmp_path) -> dict:
    """FP32 training -> FQN QAT (calibration) -> resume -> test -> export -> engine / onnxruntime -> DFQ PTQ
    (data-free) -> its export, through the tools; returns the PTQ report."""
    tool('train.py', fp_cfg, '--work-dir', tmp_path / 'fp', '--cfg-options', *d, *narrow_opts('model.'),
         'train_cfg.max_epochs=1', 'train_cfg.val_interval=5', 'default_hooks.checkpoint.interval=1')
    fp_ckpt = tmp_path / 'fp' / 'epoch_1.pth'
    q_opts = [*d, *narrow_opts('model.detector.'), f'load_from={fp_ckpt}', 'model.quant_cfg.calib.num_batches=2',
              'train_cfg.val_interval=5']
    out = tool('train.py', q_cfg, '--work-dir', tmp_path / 'q', '--cfg-options', *q_opts)
    assert 'FQN calibration:' in out
    e1, e2 = tmp_path / 'q' / 'epoch_1.pth', tmp_path / 'q' / 'epoch_2.pth'
    out = tool('train.py', q_cfg, '--work-dir', tmp_path / 'q', '--resume', e1, '--cfg-options', *q_opts)
    assert 'resumed epoch: 1' in out and 'already calibrated' in out
    test_opts = ['--cfg-options', *d, *narrow_opts('model.detector.')]
    fq = coco_map(tool('test.py', q_cfg, e2, '--work-dir', tmp_path / 't', *test_opts))
    tool('export.py', q_cfg, e2, '--out', tmp_path / 'exp', *test_opts)
    rep = json.loads((tmp_path / 'exp' / 'report.json').read_text())
    assert rep['non_integer_ops'] == [], rep['non_integer_ops']  # integer from the input to the head outputs
    check_exported(q_cfg, fq, tmp_path, test_opts)
    # post-training quantization with DFQ from the FP32 checkpoint; the report lists what was not equalized
    tool('ptq.py', q_cfg, fp_ckpt, '--out', tmp_path / 'ptq', '--per-tensor', '--dfq', '--bias-correction',
         'analytic', '--ranges', 'data-free', *test_opts)
    tool('export.py', tmp_path / 'ptq' / 'config.py', tmp_path / 'ptq' / 'ptq.pth', '--out', tmp_path / 'exp2')
    return json.loads((tmp_path / 'ptq' / 'ptq_report.json').read_text())


def test_train_resume_test_export_ptq(data, tmp_path):
    rep = train_resume_test_export_ptq(FP, Q, narrow, data_opts(data), tmp_path)
    assert 'backbone.layer2.0.expand_conv->depthwise_conv' in rep['pairs']
    assert 'backbone.layer2.0.depthwise_conv' in rep['relu6_replaced']
    assert any(s.startswith('backbone.layer2.1.linear_conv -> ') and 'add backbone.layer2.1.add' in s
               for s in rep['skipped'])


def ssd_narrow(p):
    return [f'{p}backbone.widen_factor=0.25', f'{p}neck.in_channels=[24,1280]', f'{p}neck.out_channels=[24,1280,32,16]',
            f'{p}bbox_head.in_channels=[24,1280,32,16]', f'{p}test_cfg.score_thr=0.0']


def test_ssdlite_train_resume_test_export_ptq(data, tmp_path):
    """mmdet's SSDLite (depthwise SSD neck and head, ReLU6) end to end through the tools."""
    d = [o.replace(f'scale=({IMG},{IMG})', f'scale=({SSD_IMG},{SSD_IMG})') for o in data_opts(data)]
    rep = train_resume_test_export_ptq(SSD_FP, SSD_Q, ssd_narrow, d, tmp_path)
    assert any(p.startswith('backbone.') and '->' in p for p in rep['pairs']), rep['pairs']
    assert rep['relu6_replaced']
