"""bench_fqn: table and targets from measured rows, per-detector diagnostic rows."""
from conftest import load_script


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
    assert 'loses 0.050' in text and 'MISSED' in text and '= 2.00' in text
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


def test_diagnostic_rows_name_existing_head_outputs():
    b = _bench()
    for det in ('retina', 'faster'):
        logits = b.ROWS['logits_minmax'][1]['model.quant_cfg.overrides'](det)
        outputs = b.ROWS['outputs_a8'][1]['model.quant_cfg.overrides'](det)
        assert all(p.endswith(':gamma=1.0') for p in logits.split(';'))
        assert all(p.endswith(':a_bits=8') for p in outputs.split(';'))
        assert len(outputs.split(';')) == 2 * len(logits.split(';'))
