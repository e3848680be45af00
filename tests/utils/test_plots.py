"""Demo/benchmark plots are written as real PNGs."""
import numpy as np

from fqn_det.utils.plots import activation_histograms, map_bars, range_caption

PNG = b'\x89PNG\r\n\x1a\n'


def test_activation_histograms(tmp_path):
    rng = np.random.default_rng(0)
    samples = {'backbone.conv1.out_quant.0': (np.maximum(rng.normal(size=10000), 0), 0.0, 2.5),
               'bbox_head.retina_cls.out_quant.0': (rng.normal(-4, 1, size=5000), -7.0, -1.5),
               'neck.fpn_convs.0.out_quant.0': (rng.normal(size=3000), -3.0, 3.0),
               'floored': (rng.normal(-4, 1, size=5000), -3.2, 1.0, -2.94)}
    out = activation_histograms(samples, tmp_path / 'plots' / 'hist.png')
    assert out.read_bytes()[:8] == PNG and out.stat().st_size > 10_000


def test_range_caption_tells_the_floor_apart():
    x = np.array([-9.0, -5.0, -4.0, -1.0, 0.5, 3.0])
    assert range_caption(x, -3.2, 1.0) == 'range [-3.2, 1], 66.67% clipped'
    assert range_caption(x, -3.2, 1.0, -2.944) == \
        'range [-3.2, 1], 50.00% under it (and under the floor -2.94: discarded either way), 16.67% above'


def test_map_bars(tmp_path):
    out = map_bars([('FP32', 0.19), ('FQN W4A4', 0.16), ('engine', 0.166)], tmp_path / 'map.png')
    assert out.read_bytes()[:8] == PNG and out.stat().st_size > 5_000
