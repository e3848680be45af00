"""tools/dist_train.sh with 2 CPU processes (gloo) vs tools/train.py with one, same global batches.

Each rank dumps the state it holds after training (test-only RankStateDumpHook).
Checked: both ranks end with identical quantizer state and parameters; the
checkpoint equals what each rank holds; calibration ranges equal the
single-process ones (histograms merged exactly, same union of images); after
QAT the ranges and parameters match the single-process run within the stated
tolerance.

Same global batches: the sampler does not shuffle and every training image
appears twice in a row, so rank 0 and rank 1 see identical batches. That makes
the per-rank loss normalization of mmdet (mean over each rank's positive
anchors, then DDP's mean over ranks) equal to the single process's, and each
rank's percentile equal to the global one; what remains is float rounding
(batch 2 vs batch 4 kernels, gradient all-reduce order). With different
images per rank the runs differ by more: mmdet normalizes losses per rank.
"""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fqn_det.utils.checkpoint import allow_mmengine_checkpoints
from test_train_test_e2e import data_opts, model_opts, tool  # tests/tools helpers

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
# Tolerances for distributed vs single-process after 3 QAT iterations (see module docstring).
RANGE_RTOL = 1e-4     # activation ranges, relative to the range width (measured: 0)
PARAM_RTOL = 1e-3     # parameter difference, relative to the update the run made (measured: 8e-6)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    from fqn_det.datasets import generate_synthetic_coco
    tmp = tmp_path_factory.mktemp('dist')
    data = tmp / 'data'
    generate_synthetic_coco(data, num_train=6, num_val=4, img_size=96, seed=5, progress=False)
    _duplicate_each_image(data / 'annotations' / 'instances_train.json')
    d = data_opts(data)
    fp_cfg = ROOT / 'configs' / 'fqn' / 'retinanet_r18-tiny_fpn_12e_synthetic.py'
    tool('train.py', fp_cfg, '--work-dir', tmp / 'fp', '--cfg-options', *d, *model_opts('retina', 'model.'),
         'train_cfg.max_epochs=1', 'train_cfg.val_interval=5', 'default_hooks.checkpoint.interval=1')
    cfg = tmp / 'retina_int4_dump.py'
    cfg.write_text(
        f"_base_ = '{ROOT}/configs/fqn/retinanet_r18-tiny_fpn_fqn-w4a4_2e_synthetic.py'\n"
        "custom_imports = dict(imports=['fqn_det', 'rank_state_dump'], allow_failed_imports=False)\n"
        "custom_hooks = [dict(type='FQNCalibrationHook'), dict(type='FQNNaNGuardHook'),\n"
        "                dict(type='FQNRNGStateHook'), dict(type='RankStateDumpHook')]\n")
    common = [*d, *model_opts('retina', 'model.detector.'), f"load_from={tmp / 'fp' / 'epoch_1.pth'}",
              'model.quant_cfg.calib.num_batches=2', 'train_cfg.max_epochs=1', 'train_cfg.val_interval=5',
              'default_hooks.checkpoint.interval=1', 'randomness.seed=0',
              'train_dataloader.dataset.pipeline.3.prob=0.0',  # no random flips: same images in both runs
              'train_dataloader.sampler.shuffle=False',
              # SGD: the update is linear in the gradient, so the comparison measures gradient
              # differences (AdamW's first steps are ~lr*sign(g) and amplify tiny ones)
              'optim_wrapper.optimizer.type=SGD', 'optim_wrapper.optimizer.lr=0.02',
              'optim_wrapper.optimizer.momentum=0.9']
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join([str(HERE), str(ROOT)]), 'PYTHON': sys.executable,
           'PORT': str(_free_port()), 'OMP_NUM_THREADS': '1'}
    res = subprocess.run(['bash', str(ROOT / 'tools' / 'dist_train.sh'), str(cfg), '2', '--work-dir',
                          str(tmp / 'dist'), '--cfg-options', *common, 'train_dataloader.batch_size=2'],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, (res.stdout + res.stderr)[-5000:]
    env.pop('PORT')
    res = subprocess.run([sys.executable, str(ROOT / 'tools' / 'train.py'), str(cfg), '--work-dir',
                          str(tmp / 'single'), '--cfg-options', *common, 'train_dataloader.batch_size=4'],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, (res.stdout + res.stderr)[-5000:]
    return tmp


def _duplicate_each_image(ann: Path) -> None:
    """Image i -> images 2i and 2i+1 (same file, same boxes)."""
    coco = json.loads(ann.read_text())
    images, anns = [], []
    for img in coco['images']:
        for dup in range(2):
            new_id = 2 * img['id'] + dup
            images.append({**img, 'id': new_id})
            for a in coco['annotations']:
                if a['image_id'] == img['id']:
                    anns.append({**a, 'id': len(anns) + 1, 'image_id': new_id})
    coco['images'], coco['annotations'] = images, anns
    ann.write_text(json.dumps(coco))


def _load(p: Path) -> dict:
    allow_mmengine_checkpoints()
    return torch.load(p, map_location='cpu')


def test_ranks_identical_and_checkpoint_equals_rank_state(runs):
    r0, r1 = _load(runs / 'dist' / 'rank_0.pth'), _load(runs / 'dist' / 'rank_1.pth')
    assert r0.keys() == r1.keys()
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k
    ckpt = _load(runs / 'dist' / 'epoch_1.pth')['state_dict']
    assert ckpt.keys() == r0.keys()
    for k in r0:
        assert torch.equal(ckpt[k], r0[k]), k
    assert int(ckpt['calibrated']) == 1


def _act_ranges(sd: dict) -> dict:
    return {k[:-len('.min_val')]: (float(sd[k]), float(sd[k[:-len('min_val')] + 'max_val']))
            for k in sd if k.endswith('.min_val')}


def test_calibration_matches_single_process(runs):
    dist_r = json.loads((runs / 'dist' / 'calibration_ranges.json').read_text())
    single_r = json.loads((runs / 'single' / 'calibration_ranges.json').read_text())
    assert dist_r.keys() == single_r.keys() and len(dist_r) > 20
    for name, r in dist_r.items():
        s = single_r[name]
        width = s['max'] - s['min']
        # same images, same merged histogram: equal up to float rounding of the convs
        # (batch 2 vs batch 4 kernels), at most one histogram bin
        assert abs(r["min"] - s["min"]) <= 1e-4 * width + 1e-6, name
        assert abs(r["max"] - s["max"]) <= 1e-4 * width + 1e-6, name


def test_after_qat_close_to_single_process(runs):
    dist_sd = _load(runs / 'dist' / 'epoch_1.pth')['state_dict']
    single_sd = _load(runs / 'single' / 'epoch_1.pth')['state_dict']
    fp_sd = _load(runs / 'fp' / 'epoch_1.pth')['state_dict']
    dr, sr = _act_ranges(dist_sd), _act_ranges(single_sd)
    assert dr.keys() == sr.keys()
    for name, (lo, hi) in dr.items():
        slo, shi = sr[name]
        width = shi - slo
        assert abs(lo - slo) <= RANGE_RTOL * width + 1e-6 and abs(hi - shi) <= RANGE_RTOL * width + 1e-6, name
    # parameters: the two runs differ by far less than the update either made
    num = den = 0.0
    for k, v in fp_sd.items():
        qk = f'detector.{k}'
        if qk in dist_sd and v.is_floating_point() and 'bn' not in k:
            num += float((dist_sd[qk] - single_sd[qk]).double().pow(2).sum())
            den += float((single_sd[qk] - v).double().pow(2).sum())
    assert den > 0, 'QAT did not update the parameters'
    assert num ** 0.5 <= PARAM_RTOL * den ** 0.5, (num ** 0.5, den ** 0.5)
