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
import io
import json
import os
import random
import re
import shutil
import sys
import zipfile
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
from fqn_det.dfq.ptq import BadFloatWeightsError
from fqn_det.export.exporter import export_model
from fqn_det.export.int_model import IntModelFormatError, load_int_model
from fqn_det.export.out_dir import ExportTargetError
from fqn_det.models import CheckpointMismatchError
from fqn_det.models.integer_detector import DetectorKindMismatchError
from fqn_det.models.quant_scheme import QuantSchemeMismatchError
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


# 12. export --out naming a non-empty directory it did not write: refused, nothing in it touched ---
@pytest.mark.parametrize('case', ['foreign-dir', 'export-plus-user-file'])
def test_export_into_foreign_directory(env, tmp_path, case):
    tmp, data = env
    if case == 'foreign-dir':  # e.g. a training run, with the checkpoint being exported
        out = tmp_path / 'run'
        out.mkdir()
        shutil.copy(tmp / 'int4.pth', out / 'epoch_1.pth')
        (out / 'notes.txt').write_text('mine')
        ckpt = out / 'epoch_1.pth'
    else:  # a previous export the user added a file to
        out = shutil.copytree(tmp / 'export', tmp_path / 'export')
        (out / 'notes.txt').write_text('mine')
        ckpt = tmp / 'int4.pth'
    before = snapshot(out)
    with pytest.raises(ExportTargetError, match=rf'{re.escape(str(out))} .*(not a previous export|notes\.txt)'):
        run_tool('export', Q_CFG, ckpt, '--out', out, *opts(data))
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no temporary sibling left


def test_export_replaces_previous_export_and_fills_empty_dir(env, tmp_path):
    tmp, data = env
    prev = shutil.copytree(tmp / 'export', tmp_path / 'export')
    (prev / 'model.onnx').write_bytes(b'stale')
    run_tool('export', Q_CFG, tmp / 'int4.pth', '--out', prev, *opts(data))
    assert (prev / 'model.onnx').read_bytes() == (tmp / 'export' / 'model.onnx').read_bytes()
    empty = tmp_path / 'empty'
    empty.mkdir()
    run_tool('export', Q_CFG, tmp / 'int4.pth', '--out', empty, '--no-onnx', *opts(data))
    assert sorted(p.name for p in empty.iterdir()) == ['model.fqnint', 'report.json', 'report.md']
    assert sorted(p.name for p in tmp_path.iterdir()) == ['empty', 'export']


# 13. export --out naming a regular file, or the current directory: refused before any work -------
@pytest.mark.parametrize('case', ['file', 'cwd'])
def test_export_out_is_a_file_or_the_current_dir(env, tmp_path, monkeypatch, case):
    tmp, data = env
    if case == 'file':
        out = tmp_path / 'model.out'
        out.write_bytes(b'user data')
        arg = out
    else:
        monkeypatch.chdir(tmp_path)
        (tmp_path / 'mine.txt').write_text('x')
        arg = '.'
    before = snapshot(tmp_path)
    with mock.patch('fqn_det.export.exporter.build_graphs', side_effect=AssertionError('work started')):
        with pytest.raises(ExportTargetError, match=r'not a directory' if case == 'file' else r'current directory'):
            run_tool('export', Q_CFG, tmp / 'int4.pth', '--out', arg, *opts(data))
    assert snapshot(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before)  # no hidden .old / temp entry


# 14. --resume in a work dir with no checkpoint: an error, not training from random weights -------
def test_resume_with_nothing_to_resume(env, tmp_path):
    tmp, data = env
    work = tmp_path / 'work'
    work.mkdir()
    with pytest.raises(SystemExit, match=r'nothing to resume in .*work.*last_checkpoint.*load_from'):
        run_tool('train', Q_CFG, '--work-dir', work, '--resume', *opts(data))
    assert written(work) == []


# 15. max_keep_ckpts=1 and a kill while the next checkpoint is written: the previous one is kept ---
def test_kill_during_checkpoint_keeps_previous_checkpoint(tmp_path):
    from mmengine.hooks import CheckpointHook
    from fqn_det.utils.atomic_backend import use_atomic_local_writes
    use_atomic_local_writes()
    hook = CheckpointHook(interval=1, max_keep_ckpts=1, by_epoch=True)
    saved = []

    def save_checkpoint(out_dir, filename, *args, **kwargs):
        if saved:  # the second save is killed before its file exists
            raise KeyboardInterrupt
        hook.file_backend.put(b'epoch 1 weights', osp_join(out_dir, filename))
        saved.append(filename)

    runner = mock.Mock(work_dir=str(tmp_path), epoch=0, iter=0, save_checkpoint=save_checkpoint,
                       message_hub=mock.Mock(runtime_info={}), rank=0)
    hook.before_train(runner)
    hook._save_checkpoint(runner)
    runner.epoch = 1
    with pytest.raises(KeyboardInterrupt):
        hook._save_checkpoint(runner)
    assert (tmp_path / 'epoch_1.pth').read_bytes() == b'epoch 1 weights'
    last = (tmp_path / 'last_checkpoint').read_text()
    assert Path(last).is_file()  # --resume finds what last_checkpoint names


def osp_join(*parts) -> str:
    return os.path.join(*map(str, parts))


# 16. a config with another quantization scheme than the checkpoint's: refused when testing/exporting
@pytest.mark.parametrize('entry', ['test', 'export'])
def test_config_scheme_differs_from_checkpoint(env, tmp_path, entry):
    tmp, data = env
    out, work = tmp_path / 'out', tmp_path / 'work'
    bits = opts(data, 'model.detector.', 'model.quant_cfg.act.bits=2')
    with pytest.raises(QuantSchemeMismatchError, match=r'quant_cfg\.act\.bits: checkpoint 4, config 2'):
        if entry == 'test':
            run_tool('test', Q_CFG, tmp / 'int4.pth', '--work-dir', work, '--out', out / 'preds.pkl', *bits)
        else:
            run_tool('export', Q_CFG, tmp / 'int4.pth', '--out', out, *bits)
    assert not out.exists()


def test_float_checkpoint_loads_into_any_scheme(env):
    tmp, _ = env
    sd = torch.load(tmp / 'fp32.pth')['state_dict']
    model = build_quantized(tiny_model_cfg('retina'), dict(weight=dict(bits=3), act=dict(bits=2)))
    model.load_state_dict(sd)  # no error: a float checkpoint carries no scheme
    assert model.scheme_record()['act']['bits'] == 2


def test_old_checkpoint_zero_points_off_the_grid(env):
    tmp, _ = env
    sd = torch.load(tmp / 'int4.pth')['state_dict']
    del sd['quant_scheme']  # a checkpoint written before the scheme record
    sd['detector.backbone.input_quant.zero_point'] = torch.tensor([7], dtype=torch.int32)
    model = build_quantized(tiny_model_cfg('retina'), dict(act=dict(bits=2)))
    with pytest.raises(QuantSchemeMismatchError, match=r"backbone\.\S+: the checkpoint's zero-points span "
                                                       r"\[\d, \d\], outside the config's 2bit-asym.* \[0, 3\]"):
        model.load_state_dict(sd)


# 17. tools/test.py given a renamed ONNX file: that file is evaluated, a broken one is named -------
def test_renamed_onnx_file_is_the_one_used(env, tmp_path):
    tmp, data = env
    exp = shutil.copytree(tmp / 'export', tmp_path / 'export')
    bad = truncated(tmp / 'export' / 'model.onnx', exp / 'other.onnx')  # model.onnx stays intact
    with pytest.raises(IntModelFormatError, match=rf'{re.escape(str(bad))}: truncated or corrupt ONNX'):
        run_tool('test', Q_CFG, bad, '--work-dir', tmp_path / 'work', *opts(data))
    from fqn_det.export.backends import exported_files
    (exp / 'model.fqnint').rename(exp / 'other.fqnint')
    assert exported_files(bad, 'onnxruntime') == (exp / 'other.fqnint', {'features': bad})
    (exp / 'other.fqnint').unlink()
    with pytest.raises(FileNotFoundError, match=r'other\.onnx: the integer model file.*other\.fqnint'):
        exported_files(bad, 'onnxruntime')


# 18. tools/ptq.py given a NaN weight or a negative BN variance: names the tensor, writes nothing --
@pytest.mark.parametrize('bad', ['nan-weight', 'negative-var'])
def test_ptq_bad_float_weights(env, tmp_path, bad):
    tmp, data = env
    ckpt = torch.load(tmp / 'fp32.pth')
    key = 'backbone.layer1.0.conv2.weight' if bad == 'nan-weight' else 'backbone.layer1.0.bn2.running_var'
    ckpt['state_dict'][key].view(-1)[0] = float('nan') if bad == 'nan-weight' else -1.0
    torch.save(ckpt, tmp_path / 'bad.pth')
    out = tmp_path / 'out'
    where = re.escape(key.rsplit('.', 1)[0] if bad == 'nan-weight' else key)  # the checkpoint's own key
    with pytest.raises(BadFloatWeightsError, match=where + (r'.*non-finite' if bad == 'nan-weight' else
                                                              r'.*negative')):
        run_tool('ptq', Q_CFG, tmp_path / 'bad.pth', '--out', out, *opts(data))
    assert not out.exists()


# 19. an exported RetinaNet evaluated with a Faster R-CNN config: the kinds are named --------------
def test_exported_model_of_another_detector_kind(env, tmp_path):
    tmp, data = env
    preds = tmp_path / 'preds.pkl'
    with pytest.raises(DetectorKindMismatchError, match=r'model\.fqnint was exported from a RetinaNet but the '
                                                        r'config describes a FasterRCNN'):
        run_tool('test', FASTER_Q_CFG, tmp / 'export' / 'model.fqnint', '--work-dir', tmp_path / 'work',
                 '--out', preds, *opts(data))
    assert not preds.exists()


# 20. hostile .fqnint files: a deflated header bomb, an array declaring 745 GiB: names the file ---
def _rewrite(src: Path, dst: Path, member: str, data: bytes, compress=zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, 'w') as zout:
        for info in zin.infolist():
            body = data if info.filename == member else zin.read(info)
            zout.writestr(info.filename, body, compress_type=compress if info.filename == member else
                          zipfile.ZIP_STORED)
    return dst


@pytest.mark.parametrize('case', ['header-bomb', 'huge-npy'])
def test_hostile_integer_model(env, tmp_path, case):
    tmp, _ = env
    src = tmp / 'export' / 'model.fqnint'
    with zipfile.ZipFile(src) as z:
        header = z.read('header.json')
        npy = next(n for n in z.namelist() if n.endswith('.npy'))
    if case == 'header-bomb':  # the real header followed by 200 MB of spaces, deflated to ~200 KB
        bad = _rewrite(src, tmp_path / 'bomb.fqnint', 'header.json', header + b' ' * (200 << 20),
                       zipfile.ZIP_DEFLATED)
        msg = r'member header\.json is compressed'
    else:  # a header claiming 745 GiB of int8 over the few bytes it holds
        fake = io.BytesIO()
        np.lib.format.write_array_header_1_0(fake, dict(descr='|i1', fortran_order=False, shape=(800_000_000_000,)))
        bad = _rewrite(src, tmp_path / 'huge.fqnint', npy, fake.getvalue() + b'\0' * 64)
        msg = rf'member {re.escape(npy)} declares a 800000000000 int8 array'
    with pytest.raises(IntModelFormatError, match=rf'{re.escape(str(bad))}: {msg}'):
        load_int_model(bad)


# 21. the overrides string of the docs, split at its commas by --cfg-options: read as written -----
def test_overrides_string_split_by_cfg_options():
    import argparse
    from mmengine.config import DictAction
    p = argparse.ArgumentParser()
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    given = p.parse_args(['--cfg-options', 'model.quant_cfg.overrides=bbox_head.retina_cls:gamma=1.0;'
                          'backbone.conv1:w_bits=8,a_bits=8']).cfg_options['model.quant_cfg.overrides']
    assert isinstance(given, list)  # what DictAction makes of the comma
    qc = QuantConfig.from_dict(dict(overrides=given))
    assert qc.overrides == [dict(pattern='bbox_head.retina_cls', gamma=1.0),
                            dict(pattern='backbone.conv1', w_bits=8, a_bits=8)]
    with pytest.raises(ValueError, match=r'quant_cfg\.overrides mixes dicts and strings'):
        QuantConfig.from_dict(dict(overrides=[dict(pattern='a', w_bits=8), 'b:w_bits=8']))


# 22. tools/ptq.py given a quantized (per-channel int4) checkpoint: the cause, not a shape mismatch -
def test_ptq_given_quantized_checkpoint(env, tmp_path):
    tmp, data = env
    out = tmp_path / 'out'
    with pytest.raises(SystemExit, match=r'expects a full-precision checkpoint, got a quantized one'):
        run_tool('ptq', Q_CFG, tmp / 'int4.pth', '--out', out, *opts(data))
    assert not out.exists()


# 23. reproducible exports and no stale temporaries: same bytes twice, killed writers' files removed
def test_export_reproducible_and_stale_temps_removed(env, tmp_path):
    tmp, data = env
    stale_dir = tmp_path / '.export.fqntmp-999999999-abc'  # a killed export (no such process)
    stale_dir.mkdir()
    (stale_dir / 'model.fqnint').write_bytes(b'partial')
    live = tmp_path / f'.export.fqntmp-{os.getpid()}-xyz'  # a concurrent export still running
    live.mkdir()
    unrelated = tmp_path / '.export.mine'
    unrelated.write_text('x')
    for out in ('export', 'again'):
        run_tool('export', Q_CFG, tmp / 'int4.pth', '--out', tmp_path / out, '--no-onnx', *opts(data))
    assert (tmp_path / 'export' / 'model.fqnint').read_bytes() == (tmp_path / 'again' / 'model.fqnint').read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(['again', 'export', live.name, unrelated.name])
