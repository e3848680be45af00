"""Bad-input catalogue: each wrong input gives a clear error and leaves no partial output.

Every case asserts the exception type, that the message names the cause (the
setting, module path, layer, file or key), and, where the failing step could
write something (export dir, PTQ output, predictions, checkpoints, calibration
ranges), that nothing was written or the previous output is byte-identical.
The tools run in this process (``tools/*.py`` ``main()``), on a tiny
generated dataset with narrow ResNet-18 detectors.
"""
import copy
import importlib.util
import json
import os
import random
import re
import shutil
import sys
from pathlib import Path
from unittest import mock

import cv2
import numpy as np
import pytest
import torch
from mmdet.registry import MODELS

from conftest import ROOT, batch, build_quantized, calibrate_on, tiny_model_cfg
from fqn_det.convert import quantize_detector
from fqn_det.datasets import generate_synthetic_coco
from fqn_det.export.exporter import export_model
from fqn_det.export.int_model import IntModelFormatError
from fqn_det.models import CheckpointMismatchError
from fqn_det.nn.builder import UnsupportedModuleError
from fqn_det.quant import NonFiniteActivationError, NotCalibratedError
from fqn_det.quant.config import QuantConfig
from fqn_det.utils.checkpoint import CheckpointError
from fqn_det.utils.dataset_check import EmptyDatasetError

sys.path.insert(0, str(ROOT / 'tests' / 'tools'))
from test_train_test_e2e import data_opts, model_opts  # noqa: E402

CFG = ROOT / 'configs' / 'fqn'
Q_CFG, FP_CFG = CFG / 'retinanet_r18-tiny_fpn_fqn-w4a4_2e_synthetic.py', CFG / 'retinanet_r18-tiny_fpn_12e_synthetic.py'
FASTER_Q_CFG = CFG / 'faster-rcnn_r18-tiny_fpn_fqn-w4a4_2e_synthetic.py'


def run_tool(name: str, *args) -> None:
    """``tools/<name>.py`` with command line ``args``, in this process.

    Environment, ``sys.path``, RNG states and OpenCV's thread count (which the
    tools and mmengine's runner change) are restored afterwards.
    """
    spec = importlib.util.spec_from_file_location(f'tools_{name}', ROOT / 'tools' / f'{name}.py')
    mod = importlib.util.module_from_spec(spec)
    states = random.getstate(), np.random.get_state(), torch.get_rng_state(), cv2.getNumThreads()
    try:
        with mock.patch.dict(os.environ), mock.patch.object(sys, 'path', list(sys.path)), \
                mock.patch.object(sys, 'argv', [f'{name}.py', *map(str, args)]):
            spec.loader.exec_module(mod)
            mod.main()
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        cv2.setNumThreads(states[3])


def snapshot(path: Path) -> dict:
    """Relative path -> bytes of every file under ``path`` (to compare before/after)."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob('*')) if p.is_file()}


def written(work_dir: Path) -> list:
    """Checkpoints and calibration ranges in a work dir (mmengine's run logs are expected)."""
    return sorted(p.name for p in work_dir.rglob('*')
                  if p.suffix == '.pth' or p.name in ('last_checkpoint', 'calibration_ranges.json'))


@pytest.fixture(scope='module')
def env(tmp_path_factory):
    """Tiny dataset (+ an empty and an unannotated annotation file), checkpoints and an export."""
    tmp = tmp_path_factory.mktemp('catalogue')
    data = tmp / 'data'
    generate_synthetic_coco(data, num_train=2, num_val=1, img_size=96, seed=5, progress=False)
    ann = json.loads((data / 'annotations' / 'instances_train.json').read_text())
    (data / 'annotations' / 'empty.json').write_text(json.dumps(dict(ann, images=[], annotations=[])))
    (data / 'annotations' / 'unannotated.json').write_text(json.dumps(dict(ann, annotations=[])))
    cfg = tiny_model_cfg('retina')  # the detector model_opts('retina', ...) configures
    torch.manual_seed(0)
    det = MODELS.build(copy.deepcopy(cfg))
    det.init_weights()
    torch.save({'state_dict': det.state_dict(), 'meta': {}}, tmp / 'fp32.pth')
    for bad in ('nan', 'inf'):  # a float checkpoint whose neck.fpn_convs.0 outputs NaN / inf
        with torch.no_grad():
            det.neck.fpn_convs[0].conv.bias[0] = float(bad)
        torch.save({'state_dict': det.state_dict(), 'meta': {}}, tmp / f'fp32_{bad}.pth')
    model = build_quantized(cfg)
    calibrate_on(model, batch(5, n=1, size=64))
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, tmp / 'int4.pth')
    export_model(model, copy.deepcopy(cfg), tmp / 'export')
    return tmp, data


def opts(data: Path, prefix: str = 'model.detector.', *extra) -> list:
    return ['--cfg-options', *data_opts(data), *model_opts('retina', prefix), *extra]


def truncated(src: Path, dst: Path) -> Path:
    b = src.read_bytes()
    dst.write_bytes(b[:len(b) // 2])
    return dst


# 1. an unsupported layer type: names the module path and its type ---------------------------------
def test_unsupported_layer_type():
    cfg = tiny_model_cfg('retina')
    cfg.bbox_head.norm_cfg = dict(type='GN', num_groups=4, requires_grad=True)
    with pytest.raises(UnsupportedModuleError, match=r'bbox_head\.cls_convs\.0.*GroupNorm'):
        quantize_detector(MODELS.build(cfg))


# 2. bad bits / gamma / n / momentum: names the setting --------------------------------------------
@pytest.mark.parametrize('quant_cfg, setting', [
    (dict(weight=dict(bits=9)), 'weight.bits'),
    (dict(act=dict(bits=1)), 'act.bits'),
    (dict(calib=dict(gamma=0.5)), 'gamma'),
    (dict(calib=dict(gamma=1.2)), 'gamma'),
    (dict(calib=dict(num_batches=0)), 'num_batches'),
    (dict(ema=dict(momentum=1.0)), 'momentum'),
], ids=['w-bits-9', 'a-bits-1', 'gamma-0.5', 'gamma-1.2', 'n-0', 'momentum-1'])
def test_bad_quant_setting(quant_cfg, setting):
    with pytest.raises(ValueError, match=setting.replace('.', r'\.')):
        QuantConfig.from_dict(quant_cfg)


# 3. a per-module override whose pattern matches no module: names the pattern ----------------------
def test_override_pattern_matching_nothing():
    with pytest.raises(ValueError, match=r'backbone\.conv99'):
        build_quantized(tiny_model_cfg('retina'), dict(overrides=[dict(pattern='backbone.conv99', w_bits=8)]))


# 4. a checkpoint of another architecture: names the mismatched keys, writes no export -------------
def test_checkpoint_from_another_architecture(env, tmp_path):
    tmp, data = env
    with pytest.raises(CheckpointMismatchError, match=r'does not match.*(missing|unexpected|shape)'):
        run_tool('export', FASTER_Q_CFG, tmp / 'int4.pth', '--out', tmp_path / 'out')
    assert not (tmp_path / 'out').exists()


# 5. a corrupt (random bytes) or truncated checkpoint, at every entry point: names the file --------
@pytest.mark.parametrize('entry, damage', [
    ('test', 'random'), ('export', 'truncated'), ('ptq', 'truncated'), ('train-load-from', 'random'),
    ('train-resume', 'truncated')])
def test_corrupt_checkpoint(env, tmp_path, entry, damage):
    tmp, data = env
    bad = tmp_path / 'bad.pth'
    if damage == 'random':
        bad.write_bytes(random.Random(1).randbytes(4096))
    else:
        truncated(tmp / 'int4.pth', bad)
    out, work = tmp_path / 'out', tmp_path / 'work'
    msg = rf'{re.escape(str(bad))} is not a readable checkpoint \(truncated or corrupt\)'
    with pytest.raises(CheckpointError, match=msg):
        if entry == 'test':
            run_tool('test', Q_CFG, bad, '--work-dir', work, '--out', out / 'preds.pkl', *opts(data))
        elif entry == 'export':
            run_tool('export', Q_CFG, bad, '--out', out, *opts(data))
        elif entry == 'ptq':
            run_tool('ptq', Q_CFG, bad, '--out', out, *opts(data))
        elif entry == 'train-load-from':
            run_tool('train', Q_CFG, '--work-dir', work, *opts(data, 'model.detector.', f'load_from={bad}'))
        else:
            run_tool('train', Q_CFG, '--work-dir', work, '--resume', bad, *opts(data))
    assert not out.exists()
    assert not work.exists() or written(work) == []


# 6. an empty dataset (no images) for training, PTQ calibration and testing: names the file --------
@pytest.mark.parametrize('entry', ['train', 'ptq', 'test'])
def test_empty_dataset(env, tmp_path, entry):
    tmp, data = env
    work, out = tmp_path / 'work', tmp_path / 'out'
    with pytest.raises(EmptyDatasetError, match=r'empty\.json\) lists no images'):
        if entry == 'train':
            run_tool('train', Q_CFG, '--work-dir', work, *opts(
                data, 'model.detector.', f'load_from={tmp / "fp32.pth"}',
                'train_dataloader.dataset.ann_file=annotations/empty.json'))
        elif entry == 'ptq':
            run_tool('ptq', Q_CFG, tmp / 'fp32.pth', '--out', out, '--ranges', 'calibrated', *opts(
                data, 'model.detector.', 'train_dataloader.dataset.ann_file=annotations/empty.json'))
        else:
            run_tool('test', Q_CFG, tmp / 'int4.pth', '--work-dir', work, '--out', out / 'preds.pkl', *opts(
                data, 'model.detector.', 'test_dataloader.dataset.ann_file=annotations/empty.json'))
    assert not out.exists()
    assert not work.exists() or written(work) == []


# 7. images without annotations (all dropped by filter_empty_gt): names the file and the cause -----
def test_images_without_annotations(env, tmp_path):
    tmp, data = env
    with pytest.raises(EmptyDatasetError, match=r'all 2 images of .*unannotated\.json.*2 of them have no '
                                                r'annotations.*filter_empty_gt'):
        run_tool('train', FP_CFG, '--work-dir', tmp_path / 'work', *opts(
            data, 'model.', 'train_dataloader.dataset.ann_file=annotations/unannotated.json'))
    assert written(tmp_path / 'work') == []


# 8. NaN / inf activations during calibration: names the layer, no ranges or checkpoint written ----
@pytest.mark.parametrize('bad', ['nan', 'inf'])
def test_non_finite_activations_during_calibration(env, tmp_path, bad):
    tmp, data = env
    with pytest.raises(NonFiniteActivationError, match=r'neck\.fpn_convs\.0'):
        run_tool('train', Q_CFG, '--work-dir', tmp_path / 'work', *opts(
            data, 'model.detector.', f'load_from={tmp / f"fp32_{bad}.pth"}'))
    assert written(tmp_path / 'work') == []


# 9. exporting a model that was never calibrated: refused, the previous export kept as it was ------
def test_export_before_calibration(env, tmp_path):
    tmp, data = env
    out = shutil.copytree(tmp / 'export', tmp_path / 'export')
    before = snapshot(out)
    with pytest.raises(NotCalibratedError, match='never calibrated'):
        run_tool('export', Q_CFG, tmp / 'fp32.pth', '--out', out, *opts(data))
    assert snapshot(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ['export']  # no temporary sibling left


# 10. a truncated integer model or ONNX file given to tools/test.py: names the file ----------------
@pytest.mark.parametrize('name', ['model.fqnint', 'model.onnx'])
def test_truncated_exported_model(env, tmp_path, name):
    tmp, data = env
    exp = shutil.copytree(tmp / 'export', tmp_path / 'export')
    bad = truncated(tmp / 'export' / name, exp / name)
    preds = tmp_path / 'preds.pkl'
    kind = 'integer' if name.endswith('.fqnint') else 'ONNX'
    with pytest.raises(IntModelFormatError, match=rf'{re.escape(str(bad))}: truncated or corrupt {kind} model'):
        run_tool('test', Q_CFG, bad, '--work-dir', tmp_path / 'work', '--out', preds, *opts(data))
    assert not preds.exists()


# 11. a typo'd --cfg-options key: names the key and the likely one, before anything is written -----
def test_cfg_options_typo(env, tmp_path):
    tmp, data = env
    with pytest.raises(SystemExit, match=r"'train_cfg\.max_epoch'.*did you mean 'max_epochs'"):
        run_tool('train', Q_CFG, '--work-dir', tmp_path / 'work', *opts(data, 'model.detector.',
                                                                          'train_cfg.max_epoch=1'))
    assert not (tmp_path / 'work').exists()
