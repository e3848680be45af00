"""An interrupted FQN run resumed with --resume ends exactly where the uninterrupted run ends.

The uninterrupted run trains 2 epochs (calibration, then QAT with random flips)
and checkpoints after each; the interrupted run is what is left after epoch 1:
its checkpoint, resumed in a fresh work dir. Parameters, activation ranges,
EMA state, flags and frozen BN must match the uninterrupted run's epoch-2
checkpoint.
"""
from pathlib import Path

import pytest
import torch

from fqn_det.utils.checkpoint import allow_mmengine_checkpoints
from test_train_test_e2e import data_opts, model_opts, tool  # tests/tools helpers

ROOT = Path(__file__).resolve().parents[2]
CFG = ROOT / 'configs' / 'fqn'
ATOL = 1e-7  # float tolerance; CPU kernels are deterministic, so the runs are in fact identical


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    from fqn_det.datasets import generate_synthetic_coco
    tmp = tmp_path_factory.mktemp('resume')
    generate_synthetic_coco(tmp / 'data', num_train=8, num_val=4, img_size=96, seed=7, progress=False)
    d = data_opts(tmp / 'data')
    tool('train.py', CFG / 'retinanet_r18-tiny_fpn_12e_synthetic.py', '--work-dir', tmp / 'fp', '--cfg-options', *d,
         *model_opts('retina', 'model.'), 'train_cfg.max_epochs=1', 'train_cfg.val_interval=5',
         'default_hooks.checkpoint.interval=1')
    q = [*d, *model_opts('retina', 'model.detector.'), f"load_from={tmp / 'fp' / 'epoch_1.pth'}",
         'model.quant_cfg.calib.num_batches=2', 'train_cfg.max_epochs=2', 'train_cfg.val_interval=5',
         'randomness.seed=0', 'default_hooks.checkpoint.max_keep_ckpts=3', 'optim_wrapper.optimizer.lr=0.002']
    full = tool('train.py', CFG / 'retinanet_r18-tiny_fpn_fqn-w4a4_2e_synthetic.py', '--work-dir', tmp / 'full',
                '--cfg-options', *q)
    resumed = tool('train.py', CFG / 'retinanet_r18-tiny_fpn_fqn-w4a4_2e_synthetic.py', '--work-dir', tmp / 'resumed',
                   '--resume', tmp / 'full' / 'epoch_1.pth', '--cfg-options', *q)
    return tmp, full, resumed


def _sd(p: Path) -> dict:
    allow_mmengine_checkpoints()
    return torch.load(p, map_location='cpu')['state_dict']


def test_resume_does_not_recalibrate(runs):
    _, full, resumed = runs
    assert 'FQN calibration: ' in full and 'from 2 batches' in full
    assert 'already calibrated' in resumed and 'from 2 batches' not in resumed
    assert 'random number generator states restored' in resumed


def test_resumed_run_equals_uninterrupted_run(runs):
    tmp, _, _ = runs
    a, b = _sd(tmp / 'full' / 'epoch_2.pth'), _sd(tmp / 'resumed' / 'epoch_2.pth')
    assert a.keys() == b.keys()
    kinds = {'param': 0, 'range': 0, 'bn': 0}
    for k in a:
        if a[k].is_floating_point():
            assert torch.allclose(a[k], b[k], rtol=0, atol=ATOL), (k, (a[k] - b[k]).abs().max())
        else:
            assert torch.equal(a[k], b[k]), k
        kinds['range'] += k.endswith(('.min_val', '.max_val'))
        kinds['bn'] += '.bn.running_' in k
        kinds['param'] += k.endswith('.conv.weight')
    assert min(kinds.values()) > 0, kinds
    # training did move the parameters between the two checkpoints (the comparison is not vacuous)
    e1 = _sd(tmp / 'full' / 'epoch_1.pth')
    w = 'detector.bbox_head.retina_cls.conv.weight'
    assert not torch.allclose(e1[w], a[w], atol=ATOL)
