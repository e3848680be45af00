"""mmdet's own tools/train.py, --resume and tools/test.py run an fqn_det config through custom_imports.

mmdet's tools are not in its wheel, so their code is written out here as mmdet
3.3's tools/train.py and tools/test.py do it (Config.fromfile, --cfg-options,
Runner.from_cfg, runner.train() / runner.test()), with nothing from fqn_det:
the config's ``custom_imports=dict(imports=['fqn_det'])`` is the only link, and
importing the plugin installs what mmengine needs to resume from its own
checkpoints under torch's ``weights_only`` loader.
"""
import os
import subprocess
import sys

import pytest
import torch
from mmdet.registry import MODELS

from conftest import ROOT, tiny_model_cfg
from fqn_det.datasets import generate_synthetic_coco

CFG = ROOT / 'configs' / 'fqn' / 'retinanet_r18-tiny_fpn_fqn-w4a4_2e_synthetic.py'
IMG = 64

MMDET_TRAIN = '''
import argparse
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

parser = argparse.ArgumentParser()
parser.add_argument('config')
parser.add_argument('--work-dir')
parser.add_argument('--resume', nargs='?', type=str, const='auto')
parser.add_argument('--cfg-options', nargs='+', action=DictAction)
args = parser.parse_args()
cfg = Config.fromfile(args.config)
cfg.launcher = 'none'
if args.cfg_options is not None:
    cfg.merge_from_dict(args.cfg_options)
cfg.work_dir = args.work_dir or osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
if args.resume == 'auto':
    cfg.resume = True
    cfg.load_from = None
elif args.resume is not None:
    cfg.resume = True
    cfg.load_from = args.resume
runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
runner.train()
'''

MMDET_TEST = '''
import argparse

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

parser = argparse.ArgumentParser()
parser.add_argument('config')
parser.add_argument('checkpoint')
parser.add_argument('--work-dir')
parser.add_argument('--cfg-options', nargs='+', action=DictAction)
args = parser.parse_args()
cfg = Config.fromfile(args.config)
cfg.launcher = 'none'
if args.cfg_options is not None:
    cfg.merge_from_dict(args.cfg_options)
cfg.work_dir = args.work_dir
cfg.load_from = args.checkpoint
runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
runner.test()
'''


def mmdet_tool(tmp, code: str, *args, ok: bool = True) -> str:
    script = tmp / ('mmdet_train.py' if 'train()' in code else 'mmdet_test.py')
    script.write_text(code)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')]))
    res = subprocess.run([sys.executable, str(script), *map(str, args)], cwd=tmp, env=env,
                         capture_output=True, text=True, timeout=600)
    out = res.stdout + res.stderr
    assert (res.returncode == 0) == ok, out[-4000:]
    assert 'CompatWarning' not in out, out[-4000:]
    return out


def options(data, fp_ckpt):
    o = [f'load_from={fp_ckpt}', 'model.quant_cfg.calib.num_batches=2', 'train_cfg.val_interval=5',
         'train_dataloader.batch_size=2', f'val_evaluator.ann_file={data}/annotations/instances_val.json',
         f'test_evaluator.ann_file={data}/annotations/instances_val.json',
         f'train_dataloader.dataset.pipeline.2.scale=({IMG},{IMG})',
         f'test_dataloader.dataset.pipeline.1.scale=({IMG},{IMG})',
         'model.detector.backbone.base_channels=8', 'model.detector.neck.in_channels=[8,16,32,64]',
         'model.detector.neck.out_channels=16', 'model.detector.bbox_head.in_channels=16',
         'model.detector.bbox_head.feat_channels=16', 'model.detector.test_cfg.score_thr=0.0']
    for split in ('train', 'val', 'test'):
        o += [f'{split}_dataloader.dataset.data_root={data}/', f'{split}_dataloader.num_workers=0',
              f'{split}_dataloader.persistent_workers=False']
    return o


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('mmdet_tools')
    data = tmp / 'data'
    generate_synthetic_coco(data, num_train=6, num_val=2, img_size=IMG, seed=11, progress=False)
    torch.manual_seed(0)
    det = MODELS.build(tiny_model_cfg('retina'))  # an ordinary full-precision mmdet checkpoint
    det.init_weights()
    fp_ckpt = tmp / 'fp32.pth'
    torch.save({'state_dict': det.state_dict(), 'meta': {}}, fp_ckpt)
    return tmp, data, fp_ckpt


def test_mmdet_train_resume_test_through_custom_imports(setup):
    tmp, data, fp_ckpt = setup
    opts = options(data, fp_ckpt)
    out = mmdet_tool(tmp, MMDET_TRAIN, CFG, '--work-dir', tmp / 'q', '--cfg-options', *opts)
    assert 'FQN calibration:' in out and 'from 2 batches' in out
    e1, e2 = tmp / 'q' / 'epoch_1.pth', tmp / 'q' / 'epoch_2.pth'
    assert e1.is_file() and e2.is_file()
    # --resume from the mid-run checkpoint: mmengine's own loader reads its checkpoint (MessageHub and
    # all) under torch's weights_only loading, and training continues without recalibrating
    out = mmdet_tool(tmp, MMDET_TRAIN, CFG, '--work-dir', tmp / 'q', '--resume', e1, '--cfg-options', *opts)
    assert 'resumed epoch: 1' in out
    assert 'already calibrated' in out and 'from 2 batches' not in out
    out = mmdet_tool(tmp, MMDET_TEST, CFG, e2, '--work-dir', tmp / 'test', '--cfg-options', *opts)
    assert 'coco/bbox_mAP:' in out


def test_mmdet_train_resume_with_nothing_to_resume_is_an_error(setup):
    """mmdet's --resume drops load_from; with no checkpoint in the work dir, mmengine would train the
    randomly initialized detector. The calibration hook stops it before any calibration or step."""
    tmp, data, fp_ckpt = setup
    work = tmp / 'empty_run'
    out = mmdet_tool(tmp, MMDET_TRAIN, CFG, '--work-dir', work, '--resume', '--cfg-options', *options(data, fp_ckpt),
                     ok=False)
    assert 'no checkpoint to resume from' in out and 'random weights' in out, out[-3000:]
    assert 'FQN calibration:' not in out
    assert not list(work.glob('*.pth'))
