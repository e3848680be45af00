"""export_model / tools/export.py: outputs, report, bad input, no partial output."""
import copy
import json

import pytest

from conftest import batch, build_quantized, calibrate_on, tiny_model_cfg
from fqn_det.export import exporter
from fqn_det.export.int_model import load_int_model
from fqn_det.nn import QConv2d, QLinear
from fqn_det.quant import NotCalibratedError


@pytest.fixture(params=['retina', 'faster'])
def calibrated(request):
    cfg = tiny_model_cfg(request.param)
    model = build_quantized(cfg)
    calibrate_on(model, batch(5, n=2, size=64))
    return model, cfg


def test_export_writes_files_and_report(calibrated, tmp_path):
    model, cfg = calibrated
    out = tmp_path / 'exp'
    report = exporter.export_model(model, copy.deepcopy(cfg), out)
    two_stage = 'rpn_head' in cfg
    expected = {'model.fqnint', 'model.onnx', 'report.md', 'report.json'} | ({'roi_head.onnx'} if two_stage else set())
    assert {p.name for p in out.iterdir()} == expected
    assert out.stat().st_mode & 0o777 == 0o755  # readable by others (not mkdtemp's 0o700)
    graphs, meta = load_int_model(out / 'model.fqnint')
    assert meta['two_stage'] == two_stage and meta['detector']['type'] == cfg['type']
    # one integer node per (layer, call site)
    sites = sum(len(m.out_quant) for m in model.detector.modules() if isinstance(m, (QConv2d, QLinear)))
    assert report['layers'] == sites
    assert report['non_integer_ops'] == []
    assert all(x['w_bits'] == 4 and x['a_bits'] == 4 for x in report['per_layer'])
    assert json.loads((out / 'report.json').read_text())['files']['model.fqnint'] == \
        (out / 'model.fqnint').stat().st_size
    assert 'non-integer ops between input quantization and head outputs: none' in (out / 'report.md').read_text()


def test_uncalibrated_model_is_refused_and_writes_nothing(tmp_path):
    model = build_quantized(tiny_model_cfg('retina'))
    with pytest.raises(NotCalibratedError, match='never calibrated'):
        exporter.export_model(model, tiny_model_cfg('retina'), tmp_path / 'exp')
    assert list(tmp_path.iterdir()) == []


def test_failed_export_keeps_previous_output(calibrated, tmp_path, monkeypatch):
    model, cfg = calibrated
    out = tmp_path / 'exp'
    exporter.export_model(model, copy.deepcopy(cfg), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def boom(*a, **k):
        raise RuntimeError('onnx writer failed')

    monkeypatch.setattr(exporter, 'to_onnx', boom)
    with pytest.raises(RuntimeError, match='onnx writer failed'):
        exporter.export_model(model, copy.deepcopy(cfg), out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ['exp']  # no temporary directory left


def test_accumulator_bound_is_recorded_and_checked(calibrated, tmp_path):
    model, cfg = calibrated
    from fqn_det.export.detectors import build_graphs
    g = build_graphs(model)['features']
    convs = [n for n in g.nodes if n.op == 'conv']
    assert convs and all(0 < n.attrs['acc_bound'] < 2 ** 31 for n in convs)
