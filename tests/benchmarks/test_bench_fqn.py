"""bench_fqn: table and targets from measured rows, per-detector diagnostic rows."""
import pytest
from conftest import build_quantized, load_script, tiny_model_cfg


def _bench():
    return load_script('benchmarks/bench_fqn.py')


def _m(v):
    return {'coco/bbox_mAP': v, 'coco/bbox_mAP_50': v + 0.2, 'coco/bbox_mAP_75': v + 0.05}


def test_render_targets_and_partial_marker():
    b = _bench()
    rows = [('fp32', 'FP32', _m(0.50), 1.0), ('fqn', 'FQN', _m(0.495), 2.0)]
    text = b.render(rows, total_rows=3)
    assert 'PARTIAL: 2 of 3 rows' in text
    assert 'FQN W4A4 loses 0.005 mAP' in text and ': met.' in text
    text = b.render(rows + [('iao', 'IAO', _m(0.48), 3.0)], total_rows=3)
    assert 'PARTIAL' not in text
    assert 'IAO loss / FQN loss = 4.00' in text and text.count('met') >= 2
    text = b.render([('fp32', 'FP32', _m(0.50), 1.0), ('fqn', 'FQN', _m(0.45), 2.0),
                     ('iao', 'IAO', _m(0.40), 3.0)], total_rows=3)
    assert 'loses 0.050' in text and 'missed' in text and '= 2.00' in text
    assert '| `fqn` | FQN | 0.450 | 0.650 | 0.500 | +0.050 | - | 2s |' in text


def test_render_loss_against_fine_tuned_fp32():
    """The same QAT budget without quantization is the baseline that isolates the quantization loss."""
    b = _bench()
    rows = [('fp32', 'FP32', _m(0.48), 1.0), ('fp32_ft', b.FP32_FT, _m(0.52), 1.0),
            ('fqn', 'FQN', _m(0.50), 2.0), ('iao', 'IAO', _m(0.40), 3.0)]
    text = b.render(rows, total_rows=4)
    assert '| `fqn` | FQN | 0.500 | 0.700 | 0.550 | -0.020 | +0.020 | 2s |' in text
    assert '| `fp32_ft` |' in text and '| - | - |' in text
    assert 'moves FP32 by +0.040), FQN W4A4 loses 0.020, IAO 0.120 (ratio 6.00)' in text


@pytest.mark.parametrize('det', ['retina', 'faster'])
def test_diagnostic_rows_set_the_head_output_quantizers(det):
    """The per-detector overrides convert (a pattern matching nothing is an error) and change
    exactly the head outputs' quantizers."""
    b = _bench()
    logits = b.ROWS['logits_minmax'][1]['model.quant_cfg.overrides'](det)
    outputs = b.ROWS['outputs_a8'][1]['model.quant_cfg.overrides'](det)
    cfg = tiny_model_cfg(det)
    plain = _act_quantizers(build_quantized(cfg))
    with_gamma = _act_quantizers(build_quantized(cfg, dict(overrides=logits)))
    with_a8 = _act_quantizers(build_quantized(cfg, dict(overrides=outputs)))
    cls = {n for n in plain if n.split('.out_quant')[0] in logits.replace(':gamma=1.0', '').split(';')}
    assert cls and all(with_gamma[n] == ((1.0, 4) if n in cls else plain[n]) for n in plain)
    changed = {n for n in plain if with_a8[n] != plain[n]}
    assert cls < changed and all(with_a8[n] == (plain[n][0], 8) for n in changed)
    assert len({n.split('.out_quant')[0] for n in changed}) == 2 * len({n.split('.out_quant')[0] for n in cls})


@pytest.mark.parametrize('det', ['retina', 'faster'])
def test_per_channel_rows_give_the_head_outputs_one_range_per_channel(det):
    b = _bench()
    cfg = tiny_model_cfg(det)
    rows = ['outputs_pc'] + (['floor_pc'] if det == 'retina' else [])
    outputs = {p.split('=')[0] for p in ';'.join(b.HEAD_OUTPUTS[det].values()).split(';')}
    for row in rows:
        model = build_quantized(cfg, dict(overrides=b.ROWS[row][1]['model.quant_cfg.overrides'](det)))
        qs = {n: q for n, q in model.detector.named_modules() if hasattr(q, 'per_channel') and hasattr(q, 'floor')}
        pc = {n.split('.out_quant')[0] for n, q in qs.items() if q.per_channel}
        assert pc == outputs, row
        for n, q in qs.items():
            if q.per_channel:
                layer = model.detector.get_submodule(n.split('.out_quant')[0])
                width = layer.conv.out_channels if hasattr(layer, 'conv') else layer.linear.out_features
                assert q.scale.shape == (width,)
        floored = {n.split('.out_quant')[0] for n, q in qs.items() if q.floor is not None}
        assert floored == ({'bbox_head.retina_cls'} if row == 'floor_pc' else set())
    if det == 'faster':
        assert 'floor_pc' not in b.default_rows(det) and 'outputs_pc' in b.default_rows(det)


def test_render_reports_the_floor_and_per_channel_row():
    b = _bench()
    rows = [('fp32', 'FP32', _m(0.50), 1.0), ('iao', 'IAO', _m(0.34), 3.0), ('floor_pc', 'x', _m(0.51), 2.0)]
    text = b.render(rows, total_rows=3)
    assert ('score floor and per-channel head-output ranges (not in the paper) loses -0.010 (target: at most '
            '0.010): met. IAO loss / its loss = inf') in text


def _act_quantizers(model):
    from fqn_det.quant import ActQuantizer
    return {n: (q.gamma, q.scheme.bits) for n, q in model.detector.named_modules() if isinstance(q, ActQuantizer)}


def test_render_several_seeds_mean_spread_and_paired_ratios():
    """With --seeds, a trained row reports the mean ± sample std and every seed's value; the
    target lines use the means, and the IAO/FQN ratio is also given per seed (paired runs)."""
    b = _bench()
    rows = [('fp32', 'FP32', _m(0.50), 1.0),
            ('fqn', 'FQN', [_m(0.44), _m(0.46)], 4.0),
            ('iao', 'IAO', [_m(0.32), _m(0.38)], 6.0)]
    text = b.render(rows, total_rows=3)
    assert '| per seed | wall time |' in text and '|---' * 9 + '|' in text
    assert '| `fqn` | FQN | 0.450 ± 0.014 | 0.650 | 0.500 | +0.050 | - | 0.440 / 0.460 | 4s |' in text
    assert '| `fp32` | FP32 | 0.500 | 0.700 | 0.550 | - | - | 0.500 | 1s |' in text
    assert 'FQN W4A4 loses 0.050 mAP' in text
    assert 'IAO loss / FQN loss = 3.00' in text and 'Per seed: 3.00, 3.00.' in text
    assert b._mean([_m(0.2), _m(0.4)])['coco/bbox_mAP_75'] == pytest.approx(0.35)


def test_seeds_must_be_distinct(monkeypatch):
    b = _bench()
    monkeypatch.setattr('sys.argv', ['bench_fqn.py', '--seeds', '1', '1'])
    with pytest.raises(SystemExit, match='distinct'):
        b.main()


def test_build_cfg_sets_the_row_seed(tmp_path):
    from types import SimpleNamespace
    b = _bench()
    args = SimpleNamespace(data=None, img_size=64, cfg_options=[])
    cfg = b.build_cfg(b.CONFIGS['retina'][1], args, tmp_path, {}, seed=7)
    assert cfg.randomness == dict(seed=7) and cfg.work_dir == str(tmp_path)


def test_score_floor_row_floors_only_the_retinanet_classification_outputs():
    import math
    b = _bench()
    over = b.ROWS['score_floor'][1]['model.quant_cfg.overrides']('retina')
    cfg = tiny_model_cfg('retina')
    model = build_quantized(cfg, dict(overrides=over))
    floors = {n: (q.floor, q.gamma) for n, q in model.detector.named_modules() if hasattr(q, 'floor')}
    thr = cfg['test_cfg']['score_thr']
    cls = {n for n in floors if n.startswith('bbox_head.retina_cls.out_quant')}
    assert len(cls) == 5
    assert all(floors[n] == (pytest.approx(math.log(thr / (1 - thr))), 1.0) for n in cls)
    assert all(floors[n] == (None, 0.999) for n in floors if n not in cls)


def test_score_floor_row_is_refused_for_faster_rcnn_and_left_out_of_its_default_rows(monkeypatch):
    b = _bench()
    monkeypatch.setattr('sys.argv', ['bench_fqn.py', '--detector', 'faster', '--rows', 'fqn', 'score_floor'])
    with pytest.raises(SystemExit, match=r"\['score_floor'\] do not apply to --detector faster"):
        b.main()
    assert 'score_floor' not in b.default_rows('faster') and 'score_floor' in b.default_rows('retina')
    assert set(b.default_rows('retina')) - set(b.default_rows('faster')) == {'score_floor', 'floor_pc'}
    assert set(b.default_rows('retina')) == {'fp32', 'fp32_ft', *b.ROWS}


def test_render_reports_the_score_floor_row():
    b = _bench()
    rows = [('fp32', 'FP32', _m(0.50), 1.0), ('fqn', 'FQN', _m(0.44), 2.0), ('iao', 'IAO', _m(0.34), 3.0),
            ('score_floor', 'floor', _m(0.495), 2.0)]
    text = b.render(rows, total_rows=4)
    assert 'score-threshold floor (not in the paper) loses 0.005 (target: at most 0.010): met.' in text
    assert 'IAO loss / its loss = 32.00' in text
    assert 'FQN W4A4 loses 0.060 mAP against FP32 (target: at most 0.010): missed.' in text


@pytest.mark.parametrize('det', ['retina', 'ssdlite'])
def test_recommended_row_symmetric_weights_per_channel_outputs_and_floor_on_sigmoid_heads(det):
    from mmengine.config import Config
    b = _bench()
    row = b.ROWS['recommended'][1]
    cfg = tiny_model_cfg('retina') if det == 'retina' else Config.fromfile(b.CONFIGS['ssdlite'][0]).model
    model = build_quantized(cfg, dict(weight=dict(symmetric=row['model.quant_cfg.weight.symmetric']),
                                      overrides=row['model.quant_cfg.overrides'](det)))
    assert model.quant_config.w_symmetric
    qs = {n: q for n, q in model.detector.named_modules() if hasattr(q, 'per_channel') and hasattr(q, 'floor')}
    pc = {n.split('.out_quant')[0] for n, q in qs.items() if q.per_channel}
    floored = {n.split('.out_quant')[0] for n, q in qs.items() if q.floor is not None}
    if det == 'retina':
        assert pc == {'bbox_head.retina_cls', 'bbox_head.retina_reg'} and floored == {'bbox_head.retina_cls'}
    else:  # softmax head: no floor
        assert pc == {f'bbox_head.{k}_convs.{i}.out' for k in ('cls', 'reg') for i in range(4)} and not floored


def test_render_recommended_row_against_its_detector_target():
    b = _bench()
    rows = [('fp32', 'FP32', _m(0.50), 1.0), ('recommended', 'rec', _m(0.485), 2.0)]
    assert 'recommended recipe (not in the paper) loses 0.015 (target: at most 0.020): met.' in \
        b.render(rows, 2, 'ssdlite')
    assert 'loses 0.015 (target: at most 0.010): missed.' in b.render(rows, 2, 'retina')
