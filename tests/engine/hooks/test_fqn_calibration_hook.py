"""FQNCalibrationHook with a Mock runner and a tiny quantized RetinaNet."""
import json
import logging
from unittest.mock import Mock

import numpy as np
import pytest
import torch

from conftest import DropIdx, SampleSet, aspect_ratio_loader, batch, build_quantized, tiny_model_cfg
from fqn_det.engine.hooks import FQNCalibrationHook
from fqn_det.quant import NonFiniteActivationError


def _runner(model, batches, tmp_path):
    return Mock(model=model, train_dataloader=batches, logger=logging.getLogger('test'),
                work_dir=str(tmp_path))


def test_calibrates_to_percentiles_of_all_batches(tmp_path):
    model = build_quantized(tiny_model_cfg('retina'), dict(calib=dict(num_batches=3, gamma=0.99)))
    batches = [batch(5, n=2, size=64, seed=s) for s in range(5)]
    # record the exact input of the network-input quantizer over the batches the hook uses
    seen = []
    q_in = model.detector.backbone.input_quant
    handle = q_in.register_forward_hook(lambda m, i, o: seen.append(i[0].detach().clone()))
    hook, runner = FQNCalibrationHook(), _runner(model, batches, tmp_path)
    hook.before_train(runner)
    handle.remove()
    assert len(seen) == 3  # n batches, not the whole loader
    allx = torch.cat([s.flatten() for s in seen]).numpy()
    width = np.abs(allx).max() / 2048
    assert abs(float(q_in.min_val) - np.quantile(allx, 0.01)) <= 2 * width
    assert abs(float(q_in.max_val) - np.quantile(allx, 0.99)) <= 2 * width
    assert bool(model.calibrated) and model.training  # back in training mode
    assert all(bool(q.initialized) and not q.calibrating for _, q in model.quantizers())
    # the ranges file is written with the first checkpoint (a run failing before it leaves none)
    assert not (tmp_path / 'calibration_ranges.json').exists()
    ckpt = dict(state_dict=model.state_dict(), meta={})
    hook.before_save_checkpoint(runner, ckpt)
    ranges = json.loads((tmp_path / 'calibration_ranges.json').read_text())
    assert 'backbone.input_quant' in ranges and len(ranges) == len(list(model.quantizers()))
    assert ckpt['meta']['quant_scheme'] == model.scheme_record()
    assert [p.name for p in tmp_path.iterdir()] == ['calibration_ranges.json']  # no temporary file left


def test_fewer_batches_than_n_warns_and_uses_them(tmp_path):
    model = build_quantized(tiny_model_cfg('retina'))
    with pytest.warns(UserWarning, match='only 2'):
        FQNCalibrationHook(num_batches=20).before_train(_runner(model, [batch(5), batch(5, seed=1)], tmp_path))
    assert bool(model.calibrated)


def test_already_calibrated_model_is_left_alone(tmp_path):
    model = build_quantized(tiny_model_cfg('retina'))
    model.calibrated.fill_(1)
    loader = Mock(side_effect=AssertionError('dataloader must not be used'))
    loader.__iter__ = Mock(side_effect=AssertionError('dataloader must not be used'))
    FQNCalibrationHook().before_train(_runner(model, loader, tmp_path))


def test_nan_activation_names_layer_and_leaves_no_calibration_state(tmp_path):
    model = build_quantized(tiny_model_cfg('retina'))
    conv = model.detector.neck.fpn_convs[0].conv
    with torch.no_grad():
        conv.bias.fill_(float('nan'))
    with pytest.raises(NonFiniteActivationError, match=r'neck\.fpn_convs\.0'):
        FQNCalibrationHook(num_batches=2).before_train(_runner(model, [batch(5), batch(5)], tmp_path))
    assert not bool(model.calibrated)
    assert not any(q.calibrating for _, q in model.quantizers())
    assert not (tmp_path / 'calibration_ranges.json').exists()


def test_empty_dataloader_is_an_error(tmp_path):
    model = build_quantized(tiny_model_cfg('retina'))
    with pytest.raises(RuntimeError, match='empty'):
        FQNCalibrationHook().before_train(_runner(model, [], tmp_path))


@pytest.mark.parametrize('kw, msg', [(dict(num_batches=0), 'num_batches'), (dict(num_batches=2.0), 'num_batches'),
                                     (dict(gamma=0.4), 'gamma'), (dict(gamma=1.5), 'gamma')])
def test_bad_arguments(kw, msg):
    with pytest.raises(ValueError, match=msg):
        FQNCalibrationHook(**kw)


def test_needs_a_quantized_model(tmp_path):
    with pytest.raises(TypeError, match='QuantizedDetector'):
        FQNCalibrationHook().before_train(_runner(torch.nn.Linear(2, 2), [], tmp_path))


def test_per_module_gamma_override_sets_min_max(tmp_path):
    model = build_quantized(tiny_model_cfg('retina'), dict(
        calib=dict(num_batches=2, gamma=0.99), overrides=[dict(pattern='bbox_head.retina_cls', gamma=1.0)]))
    seen = []
    conv = model.detector.bbox_head.retina_cls
    q0 = conv.out_quant[0]
    handle = q0.register_forward_hook(lambda m, i, o: seen.append(i[0].detach().clone()))
    FQNCalibrationHook().before_train(_runner(model, [batch(5), batch(5, seed=1)], tmp_path))
    handle.remove()
    allx = torch.cat([s.flatten() for s in seen])
    assert float(q0.max_val) == pytest.approx(float(allx.max()), rel=1e-6)  # min/max, not clipped
    other = model.detector.bbox_head.retina_reg.out_quant[0]
    assert other.gamma == 0.99 and q0.gamma == 1.0


def test_first_training_epoch_is_whole_after_calibration(tmp_path):
    # mmdet's AspectRatioBatchSampler keeps the last batch a stopped-early pass yielded;
    # after calibration the next epoch must still be every sample once, grouped by aspect ratio
    loader = aspect_ratio_loader(SampleSet(12))
    model = build_quantized(tiny_model_cfg('retina'))
    runner = _runner(model, loader, tmp_path)
    model.data_preprocessor = DropIdx(model.data_preprocessor)
    FQNCalibrationHook(num_batches=2).before_train(runner)
    epoch = [b['idx'] for b in loader]
    assert len(epoch) == len(loader)
    assert sorted(i for b in epoch for i in b) == list(range(12))
    assert all(len({i % 2 for i in b}) == 1 for b in epoch)  # one aspect-ratio group per batch

