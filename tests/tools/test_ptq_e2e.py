"""tools/ptq.py: DFQ post-training quantization -> tools/test.py and tools/export.py."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmdet.registry import MODELS

from conftest import tiny_model_cfg
from fqn_det.datasets import generate_synthetic_coco

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_train_test_e2e import ROOT, coco_map, data_opts, model_opts, tool  # noqa: E402

CFG = ROOT / 'configs' / 'fqn' / 'retinanet_r18-tiny_fpn_fqn-w4a4_2e_synthetic.py'


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('ptq')
    data = tmp / 'data'
    generate_synthetic_coco(data, num_train=8, num_val=4, img_size=96, seed=7, progress=False)
    torch.manual_seed(0)
    det = MODELS.build(tiny_model_cfg('retina'))  # the detector model_opts('retina', ...) configures
    det.init_weights()
    ckpt = tmp / 'fp32.pth'
    torch.save({'state_dict': det.state_dict(), 'meta': {}}, ckpt)
    return tmp, data, ckpt


@pytest.mark.parametrize('flags', [
    ['--per-tensor', '--dfq', '--bias-correction', 'analytic', '--ranges', 'data-free'],
    ['--per-channel', '--w-bits', '4', '--dfq', '--bias-correction', 'empirical', '--ranges', 'calibrated',
     '--num-batches', '2'],
], ids=['w8a8-tensor-dfq-analytic-datafree', 'w4a8-channel-dfq-empirical-calibrated'])
def test_ptq_checkpoint_evaluates_and_exports(setup, flags, tmp_path):
    tmp, data, ckpt = setup
    opts = ['--cfg-options', *data_opts(data), *model_opts('retina', 'model.detector.')]
    out = tool('ptq.py', CFG, ckpt, '--out', tmp_path / 'ptq', *flags, *opts)
    assert (tmp_path / 'ptq' / 'ptq.pth').is_file() and (tmp_path / 'ptq' / 'config.py').is_file()
    out = tool('test.py', tmp_path / 'ptq' / 'config.py', tmp_path / 'ptq' / 'ptq.pth', '--work-dir',
               tmp_path / 'test')
    fq = coco_map(out)
    tool('export.py', tmp_path / 'ptq' / 'config.py', tmp_path / 'ptq' / 'ptq.pth', '--out', tmp_path / 'exp')
    out = tool('test.py', tmp_path / 'ptq' / 'config.py', tmp_path / 'exp' / 'model.fqnint', '--work-dir',
               tmp_path / 'test')
    assert abs(coco_map(out) - fq) <= 0.1


@pytest.mark.parametrize('args, msg', [
    (['--w-bits', '9'], '--w-bits must be in'),
    (['--a-bits', '1'], '--a-bits must be in'),
    (['--num-batches', '0'], '--num-batches'),
])
def test_ptq_bad_arguments(setup, args, msg, tmp_path):
    tmp, data, ckpt = setup
    res = subprocess.run([sys.executable, str(ROOT / 'tools' / 'ptq.py'), str(CFG), str(ckpt), '--out',
                          str(tmp_path / 'o'), *args], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode != 0 and msg in res.stderr
    assert not (tmp_path / 'o').exists()


def test_ptq_checkpoint_mismatch(setup, tmp_path):
    tmp, data, ckpt = setup
    other = ROOT / 'configs' / 'fqn' / 'faster-rcnn_r18-tiny_fpn_fqn-w4a4_2e_synthetic.py'
    res = subprocess.run([sys.executable, str(ROOT / 'tools' / 'ptq.py'), str(other), str(ckpt), '--out',
                          str(tmp_path / 'o')], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode != 0 and 'does not match' in res.stderr
    assert not (tmp_path / 'o').exists()
