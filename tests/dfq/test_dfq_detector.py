"""DFQ on quantized RetinaNet / Faster R-CNN: invariance, pairs, ranges, bias correction."""
import logging
from unittest.mock import Mock

import pytest
import torch

from conftest import batch, build_quantized, tiny_model_cfg
from fqn_det.dfq.detector import (DFQError, analytic_bias_correction, apply_dfq, empirical_bias_correction,
                                  find_pairs, fold_bn_permanently, get_wb)
from fqn_det.dfq.equalize import out_channel_ranges
from fqn_det.dfq.ranges import data_free_ranges
from fqn_det.engine.hooks import FQNCalibrationHook
from fqn_det.quant.calibration import set_fake_quant


def _trained_like(kind, quant_cfg=None):
    """A model whose BN layers look trained: spread-out scales and non-trivial statistics."""
    torch.manual_seed(0)
    model = build_quantized(tiny_model_cfg(kind), quant_cfg)
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.weight.data = torch.exp(torch.randn(n, generator=g))  # scales over ~2 decades
            m.bias.data = torch.randn(n, generator=g)
            m.running_mean.uniform_(-0.5, 0.5, generator=g)
            m.running_var.uniform_(0.5, 2.0, generator=g)
    return model.eval()


def _float_outputs(model, data, kind):
    set_fake_quant(model, False, False)
    with torch.no_grad():
        d = model.data_preprocessor(data, False)
        feats = model.detector.extract_feat(d['inputs'])
        head = model.detector.bbox_head if kind == 'retina' else model.detector.rpn_head
        outs = head(feats)
    return torch.cat([t.flatten() for t in [*feats, *outs[0], *outs[1]]])


@pytest.mark.parametrize('kind', ['retina', 'faster'])
def test_folding_and_equalization_leave_the_float_model_unchanged(kind):
    model = _trained_like(kind)
    data = batch(5, n=2, size=64)
    ref = _float_outputs(model, data, kind)
    keys = set(model.state_dict())
    fold_bn_permanently(model.detector)
    assert set(model.state_dict()) == keys  # checkpoints keep the config's keys
    folded = _float_outputs(model, data, kind)
    assert float((folded - ref).abs().max() / ref.abs().max()) <= 1e-5
    pairs, skipped = find_pairs(model.detector)
    spread = lambda: [float(out_channel_ranges(get_wb(p.producer)[0]).max()  # noqa: E731
                            / out_channel_ranges(get_wb(p.producer)[0]).min()) for p in pairs]
    before = spread()
    rep = apply_dfq(model.detector, equalization=True, absorption=False)
    after = spread()
    out = _float_outputs(model, data, kind)
    assert float((out - ref).abs().max() / ref.abs().max()) <= 1e-5
    assert sum(after) < sum(before) / 2
    assert rep.sweeps >= 1 and any('residual add' in s for s in rep.skipped)
    # head convs shared across FPN levels stay one module with per-level ranges
    if kind == 'retina':
        head = model.detector.bbox_head
        assert any('cls_convs.0->' in p for p in rep.pairs) and len(head.cls_convs[0].out_quant) == 5


def test_pairs_cover_blocks_and_heads():
    pairs, _ = find_pairs(build_quantized(tiny_model_cfg('faster')).detector)
    names = [p.name for p in pairs]
    assert sum('conv1->conv2' in n for n in names) == 8  # 8 BasicBlocks in ResNet-18
    assert any('rpn_cls,rpn_reg' in n for n in names)
    assert any('shared_fcs.0->' in n for n in names) and any('->fc_cls,fc_reg' in n for n in names)


def test_analytic_bias_correction_needs_bn_statistics():
    model = _trained_like('retina')
    pairs, _ = find_pairs(model.detector)  # BN not folded: no statistics recorded
    with pytest.raises(DFQError, match='BN statistics'):
        analytic_bias_correction(pairs)
    fold_bn_permanently(model.detector)
    done = analytic_bias_correction(find_pairs(model.detector)[0])
    # 8 BasicBlock pairs, and 4 head pairs whose producers have BN (the reference head uses BN)
    assert len([d for d in done if d.startswith('backbone')]) == 8
    assert len([d for d in done if d.startswith('bbox_head')]) == 4


def test_empirical_bias_correction_reduces_output_shift():
    model = _trained_like('retina', dict(weight=dict(bits=4, per_channel=False)))
    fold_bn_permanently(model.detector)
    # feature maps large enough that zero-padded borders (where E[x] is not the
    # channel mean the correction assumes) do not dominate
    data = [batch(5, n=2, size=256, seed=s) for s in range(3)]

    def feat_means(weights_quantized: bool):
        set_fake_quant(model, weights_quantized, False)
        with torch.no_grad():
            means = [torch.cat([f.mean((0, 2, 3)) for f in
                                model.detector.extract_feat(model.data_preprocessor(d, False)['inputs'])])
                     for d in data]
        return torch.stack(means).mean(0)

    def run():
        with torch.no_grad():
            for d in data:
                model(**model.data_preprocessor(d, False), mode='tensor')

    ref = feat_means(False)  # the original float model
    before = (feat_means(True) - ref).abs().mean()
    set_fake_quant(model, True, False)
    done = empirical_bias_correction(model, run)
    assert len(done) > 10
    after = (feat_means(True) - ref).abs().mean()
    assert after < before / 2, (float(after), float(before))


@pytest.mark.parametrize('kind', ['retina', 'faster'])
def test_data_free_ranges_initialize_every_quantizer(kind):
    model = _trained_like(kind)
    fold_bn_permanently(model.detector)
    data_free_ranges(model.detector)
    qs = list(model.quantizers())
    assert qs and all(bool(q.initialized) for _, q in qs)
    assert all(torch.isfinite(q.scale) and float(q.scale) > 0 for _, q in qs)
    assert float(model.detector.backbone.layer1[0].conv1.out_quant[0].min_val) == 0.0  # ReLU output
    assert float(model.detector.backbone.maxpool.out_quant[0].min_val) == 0.0  # max-pool of a ReLU output
    model.calibrated.fill_(1)
    with torch.no_grad():
        out = model.test_step(batch(5, n=1, size=64))
    assert hasattr(out[0], 'pred_instances')


def test_data_free_ranges_respect_the_score_floor():
    from fqn_det.quant.fake_quantize import floored_min
    over = dict(overrides=[dict(pattern='bbox_head.retina_cls', floor='score_thr')])
    plain, floored = _trained_like('retina'), _trained_like('retina', over)
    for model in (plain, floored):
        with torch.no_grad():  # logits far under the threshold, as mmdet's prior init puts them
            model.detector.bbox_head.retina_cls.conv.bias.fill_(-4.6)
        fold_bn_permanently(model.detector)
        data_free_ranges(model.detector)
    for p, f in zip(plain.detector.bbox_head.retina_cls.out_quant, floored.detector.bbox_head.retina_cls.out_quant):
        assert float(f.max_val) == float(p.max_val)
        assert float(p.min_val) < float(floored_min(f.floor, f.max_val, f.scheme)) == float(f.min_val)
        assert (f.scheme.quant_min - int(f.zero_point)) * float(f.scale) < f.floor


def test_data_free_ranges_per_channel_on_head_outputs():
    over = dict(overrides=[dict(pattern='bbox_head.retina_reg', a_per_channel=True)])
    plain, pc = _trained_like('retina'), _trained_like('retina', over)  # the same weights (seeded)
    for model in (plain, pc):
        fold_bn_permanently(model.detector)
        data_free_ranges(model.detector)
    for p, q in zip(plain.detector.bbox_head.retina_reg.out_quant, pc.detector.bbox_head.retina_reg.out_quant):
        assert q.per_channel and q.min_val.shape == (q.scale.numel(),) and bool(q.initialized)
        # the per-tensor range is the union of the per-channel ones
        assert float(q.min_val.min()) == pytest.approx(float(p.min_val), abs=1e-6)
        assert float(q.max_val.max()) == pytest.approx(float(p.max_val), abs=1e-6)
        assert float((q.max_val - q.min_val).min()) < float(p.max_val - p.min_val)
        assert torch.all(q.min_val <= 0) and torch.all(q.max_val > 0)


def test_dfq_init_switch_runs_before_calibration(tmp_path):
    model = _trained_like('retina', dict(dfq_init=True, calib=dict(num_batches=2)))
    runner = Mock(model=model, train_dataloader=[batch(5), batch(5, seed=1)], logger=logging.getLogger('t'),
                  work_dir=str(tmp_path))
    FQNCalibrationHook().before_train(runner)
    assert model.detector.backbone.layer1[0].conv1.dfq_folded and bool(model.calibrated)
