"""Shared test helpers: mmdet configs, tiny detectors, batches."""
import copy
from pathlib import Path

import mmdet
import pytest
import torch
from mmdet.testing import demo_mm_inputs
from mmdet.utils import register_all_modules
from mmengine.config import Config

import fqn_det  # noqa: F401  registers QuantizedDetector and hooks

ROOT = Path(__file__).resolve().parents[1]
MMDET_CONFIGS = Path(mmdet.__file__).parent / '.mim' / 'configs'

register_all_modules(init_default_scope=True)


def load_script(rel: str):
    """A repository script (``tools/demo.py``, ``benchmarks/bench_fqn.py``) imported as a module.

    Its folder is on ``sys.path`` while it loads, as when Python runs it (``from common import ...``).
    """
    import importlib.util
    import sys
    path = ROOT / rel
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(path.parent))
    return mod


def mmdet_model_cfg(rel: str) -> dict:
    """An mmdet model config (from mmdet's own config files), ImageNet init removed."""
    model = Config.fromfile(str(MMDET_CONFIGS / rel)).model
    model.backbone.init_cfg = None
    return model


def tiny_model_cfg(kind: str) -> dict:
    """The synthetic reference detector, narrowed further for fast tests."""
    name = {'retina': 'retinanet_r18-tiny_fpn_12e_synthetic.py',
            'faster': 'faster-rcnn_r18-tiny_fpn_12e_synthetic.py'}[kind]
    m = copy.deepcopy(Config.fromfile(str(ROOT / 'configs' / 'fqn' / name)).model)
    m.backbone.base_channels = 8
    m.neck.in_channels = [8, 16, 32, 64]
    m.neck.out_channels = 16
    if kind == 'retina':
        m.bbox_head.in_channels = m.bbox_head.feat_channels = 16
    else:
        m.rpn_head.in_channels = m.rpn_head.feat_channels = 16
        m.roi_head.bbox_roi_extractor.out_channels = 16
        m.roi_head.bbox_head.in_channels = 16
        m.roi_head.bbox_head.fc_out_channels = 32
        m.train_cfg.rpn_proposal.max_per_img = 64
        m.train_cfg.rcnn.sampler.num = 32
        m.test_cfg.rpn.max_per_img = 32
    return m


def build_quantized(detector_cfg: dict, quant_cfg: dict = None):
    from mmdet.registry import MODELS
    return MODELS.build(dict(type='QuantizedDetector', detector=copy.deepcopy(detector_cfg),
                             quant_cfg=quant_cfg or {}))


def batch(num_classes: int, n: int = 2, size: int = 64, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    return demo_mm_inputs(batch_size=n, image_shapes=(3, size, size), num_classes=num_classes)


def finetuned(detector_cfg: dict, quant_cfg: dict = None, steps: int = 2):
    """Built, calibrated, then ``steps`` QAT steps (EMA ranges and weights move), in eval mode."""
    from mmengine.optim import OptimWrapper
    model = build_quantized(detector_cfg, quant_cfg)
    calibrate_on(model, batch(5, n=2, size=96, seed=0))
    model.train()
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
    for s in range(steps):
        model.train_step(batch(5, n=2, size=96, seed=10 + s), optim)
    return model.eval()


def calibrate_on(model, data: dict, gamma: float = 0.999) -> None:
    from fqn_det.quant import finish_calibration, start_calibration
    model.eval()
    start_calibration(model)
    with torch.no_grad():
        d = model.data_preprocessor(data, False)
        model(**d, mode='tensor')
    finish_calibration(model, gamma)
    model.calibrated.fill_(1)


@pytest.fixture(scope='session')
def r50_retina_cfg():
    return mmdet_model_cfg('retinanet/retinanet_r50_fpn_1x_coco.py')


@pytest.fixture(scope='session')
def r50_faster_cfg():
    return mmdet_model_cfg('faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py')


class SampleSet(torch.utils.data.Dataset):
    """Single detection samples for a real DataLoader; odd indices report a portrait aspect ratio."""

    def __init__(self, n):
        self.items = []
        for i in range(n):
            torch.manual_seed(i)
            d = demo_mm_inputs(batch_size=1, image_shapes=(3, 64, 64), num_classes=5)
            self.items.append(dict(inputs=d['inputs'][0], data_samples=d['data_samples'][0]))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return dict(self.items[i], idx=i)

    def get_data_info(self, i):
        return dict(width=64, height=96 if i % 2 else 64)


def aspect_ratio_loader(dataset, batch_size=2):
    """A DataLoader with mmdet's AspectRatioBatchSampler (shuffled), as mmdet's train configs build."""
    from mmdet.datasets.samplers import AspectRatioBatchSampler
    from mmengine.dataset import DefaultSampler, pseudo_collate
    sampler = DefaultSampler(dataset, shuffle=True, seed=0)
    return torch.utils.data.DataLoader(dataset, batch_sampler=AspectRatioBatchSampler(sampler, batch_size=batch_size),
                                       collate_fn=pseudo_collate)


class DropIdx(torch.nn.Module):
    """The model's data preprocessor, ignoring the test's extra ``idx`` key."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, data, training=False):
        return self.inner({k: v for k, v in data.items() if k != 'idx'}, training)
