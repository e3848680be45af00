"""Demo/benchmark plots are written as real PNGs."""
import numpy as np

from fqn_det.utils.plots import activation_histograms, map_bars

PNG = b'\x89PNG\r\n\x1a\n'


def test_activation_histograms(tmp_path):
    rng = np.random.default_rng(0)
    samples = {'backbone.conv1.out_quant.0': (np.maximum(rng.normal(size=10000), 0), 0.0, 2.5),
               'bbox_head.retina_cls.out_quant.0': (rng.normal(-4, 1, size=5000), -7.0, -1.5),
               'neck.fpn_convs.0.out_quant.0': (rng.normal(size=3000), -3.0, 3.0)}
    out = activation_histograms(samples, tmp_path / 'plots' / 'hist.png')
    assert out.read_bytes()[:8] == PNG and out.stat().st_size > 10_000


def test_map_bars(tmp_path):
    out = map_bars([('FP32', 0.19), ('FQN W4A4', 0.16), ('engine', 0.166)], tmp_path / 'map.png')
    assert out.read_bytes()[:8] == PNG and out.stat().st_size > 5_000
