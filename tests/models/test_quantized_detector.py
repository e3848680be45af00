"""QuantizedDetector: checkpoint loading, frozen BN during fine-tuning, modes."""
import copy

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.optim import OptimWrapper
from mmengine.runner.checkpoint import load_state_dict

from conftest import batch, build_quantized, calibrate_on, tiny_model_cfg
from fqn_det.models import CheckpointMismatchError
from fqn_det.nn import QConv2d
from fqn_det.quant import NotCalibratedError


@pytest.fixture(params=['retina', 'faster'])
def kind(request):
    return request.param


def _float_state(cfg, seed=1):
    torch.manual_seed(seed)
    det = MODELS.build(copy.deepcopy(cfg))
    det.init_weights()
    for m in det.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    return det.state_dict()


def test_float_checkpoint_loads_completely(kind):
    cfg = tiny_model_cfg(kind)
    sd = _float_state(cfg)
    model = build_quantized(cfg)
    load_state_dict(model, sd, strict=False)  # the path mmengine's load_from takes
    fsd = model.float_detector.state_dict()
    for k, v in sd.items():
        assert torch.equal(fsd[k], v), k
    # the quantized model sees the same tensors (shared, not copied)
    f2q = model.float_to_quant_keys()
    qsd = model.state_dict()
    assert len(f2q) == len(sd)
    for k, v in sd.items():
        assert torch.equal(qsd[f2q[k]], v), k


def test_float_checkpoint_missing_or_unexpected_key_is_an_error():
    cfg = tiny_model_cfg('retina')
    sd = _float_state(cfg)
    model = build_quantized(cfg)
    missing = dict(sd)
    missing.pop('bbox_head.retina_cls.weight')
    with pytest.raises(CheckpointMismatchError, match='missing keys: bbox_head.retina_cls.weight'):
        load_state_dict(model, missing)
    extra = dict(sd, **{'bbox_head.extra.weight': torch.zeros(1)})
    with pytest.raises(CheckpointMismatchError, match='unexpected keys: bbox_head.extra.weight'):
        load_state_dict(model, extra)


def test_checkpoint_from_another_architecture_is_an_error():
    sd = _float_state(tiny_model_cfg('retina'))
    wide = tiny_model_cfg('retina')
    wide.bbox_head.feat_channels = 24
    with pytest.raises(CheckpointMismatchError, match='shape mismatch'):
        load_state_dict(build_quantized(wide), sd)
    with pytest.raises(CheckpointMismatchError):
        load_state_dict(build_quantized(tiny_model_cfg('faster')), sd)


def test_quantized_checkpoint_round_trip(kind):
    cfg = tiny_model_cfg(kind)
    model = build_quantized(cfg)
    data = batch(5, n=2, size=64)
    calibrate_on(model, data)
    sd = model.state_dict()
    assert any(k.endswith('out_quant.0.scale') for k in sd)
    assert any(k.endswith('.bn.running_mean') for k in sd)  # BN tensors kept, unfolded
    other = build_quantized(cfg)
    load_state_dict(other, sd)
    assert bool(other.calibrated)
    other.eval(), model.eval()
    with torch.no_grad():
        d = model.data_preprocessor(data, False)
        a = model(**d, mode='tensor')
        b = other(**d, mode='tensor')
    for x, y in zip(torch.utils._pytree.tree_leaves(a), torch.utils._pytree.tree_leaves(b)):
        assert torch.equal(x, y)
    bad = dict(sd)
    bad.pop(next(k for k in sd if k.endswith('out_quant.0.scale')))
    with pytest.raises(CheckpointMismatchError, match='missing keys'):
        load_state_dict(build_quantized(cfg), bad)


def test_bn_frozen_bit_identical_during_finetuning(kind):
    cfg = tiny_model_cfg(kind)
    model = build_quantized(cfg)
    load_state_dict(model, _float_state(cfg))
    data = batch(5, n=2, size=64)
    calibrate_on(model, data)
    bns = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert bns
    before = {f'{n}.{k}': v.clone() for n, m in bns.items() for k, v in m.state_dict().items()}
    convs = {n: m.conv.weight.detach().clone() for n, m in model.named_modules()
             if isinstance(m, QConv2d) and m.bn is not None}
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
    model.train()
    for step in range(3):
        model.train_step(batch(5, n=2, size=64, seed=step), optim)
    after = {f'{n}.{k}': v for n, m in bns.items() for k, v in m.state_dict().items()}
    for k, v in before.items():
        assert torch.equal(v, after[k]), k
    assert all(not m.training for m in bns.values())
    changed = [n for n, w in convs.items()
               if not torch.equal(w, dict(model.named_modules())[n].conv.weight)]
    assert changed, 'fine-tuning did not update any conv weight'


def test_unfrozen_bn_updates_statistics():
    cfg = tiny_model_cfg('retina')
    model = build_quantized(cfg, dict(freeze_bn=False))
    calibrate_on(model, batch(5))
    bn = model.detector.backbone.conv1.bn
    before = bn.running_mean.clone()
    model.train()
    model.train_step(batch(5, seed=3), OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01)))
    assert not torch.equal(before, bn.running_mean)


def test_predict_before_calibration_is_an_error():
    model = build_quantized(tiny_model_cfg('retina'))
    model.eval()
    data = model.data_preprocessor(batch(5), False)
    with pytest.raises(NotCalibratedError, match='backbone.input_quant'):
        with torch.no_grad():
            model(**data, mode='predict')


def test_predict_after_calibration_returns_detections(kind):
    model = build_quantized(tiny_model_cfg(kind))
    data = batch(5)
    calibrate_on(model, data)
    with torch.no_grad():
        out = model.test_step(data)
    assert len(out) == 2 and hasattr(out[0], 'pred_instances')


def test_bad_quant_cfg_names_the_setting():
    cfg = tiny_model_cfg('retina')
    with pytest.raises(ValueError, match='weight.bits'):
        build_quantized(cfg, dict(weight=dict(bits=9)))
    with pytest.raises(ValueError, match='gamma'):
        build_quantized(cfg, dict(calib=dict(gamma=0.3)))
    with pytest.raises(ValueError, match="'wieght'"):
        build_quantized(cfg, dict(wieght=dict(bits=4)))
