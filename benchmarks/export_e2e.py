"""Faster R-CNN end to end for bench_export.py: what ``tools/test.py`` runs, timed per image.

The float detector, the integer ONNX model and the integer engine are each
evaluated with the same runner that ``tools/test.py`` builds (mmdet's test
loop, decoding, NMS and COCO metric) on a generated dataset, with mmdet's 1000
proposals per image; a hook times every test iteration (the first is a
warm-up and is not counted).
"""
import copy
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class _IterTimer:
    """An mmengine hook recording the wall time of each test iteration."""

    priority = 'VERY_LOW'

    def __init__(self):
        self.times = []
        self._t = None

    def before_test_iter(self, runner, batch_idx, data_batch=None):
        self._t = time.perf_counter()

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.times.append(time.perf_counter() - self._t)


def _hook():
    from mmengine.hooks import Hook

    class IterTimer(_IterTimer, Hook):
        pass

    return IterTimer()


def test_config(config: str, data: Path, size: int, work: Path, proposals: int, num_classes: int):
    """``config`` with the generated dataset as test set, ``proposals`` RPN proposals an image."""
    from mmengine.config import Config
    cfg = Config.fromfile(str(ROOT / config))
    syn = Config.fromfile(str(ROOT / 'configs/fqn/_base_/datasets/synthetic_coco.py'))
    loader = copy.deepcopy(syn.test_dataloader)
    loader.update(batch_size=1, num_workers=0, persistent_workers=False)
    loader.dataset.update(data_root=f'{data}/')
    loader.dataset.pipeline[1].scale = (size, size)
    cfg.test_dataloader = loader
    cfg.test_evaluator = dict(syn.test_evaluator, ann_file=f'{data}/annotations/instances_val.json')
    det = cfg.model.detector
    det.roi_head.bbox_head.num_classes = num_classes
    det.test_cfg.rpn.update(nms_pre=proposals, max_per_img=proposals)
    cfg.work_dir = str(work / 'runs')
    cfg.default_hooks.logger.interval = 1000
    return cfg


def run_test(cfg, checkpoint) -> list:
    """Per-image seconds of ``tools/test.py``'s runner on ``checkpoint`` (a float checkpoint or an export)."""
    from fqn_det.utils.cli import build_runner, is_exported_model, use_exported_model
    cfg = copy.deepcopy(cfg)
    if is_exported_model(checkpoint):
        use_exported_model(cfg, checkpoint)
    else:
        cfg.model = cfg.model.detector
        cfg.load_from = str(checkpoint)
    runner = build_runner(cfg)
    hook = _hook()
    runner.register_hook(hook)
    runner.test()
    return hook.times[1:]


def faster_end_to_end(model, mcfg, config: str, work: Path, size: int, images: int, proposals: int = 1000):
    """Median per-image test time: float detector, integer ONNX, integer engine."""
    import torch

    from fqn_det.datasets import generate_synthetic_coco
    from fqn_det.export.exporter import export_model
    data = work / 'data'
    generate_synthetic_coco(data, num_train=1, num_val=images + 1, img_size=size, seed=0, progress=False)
    num_classes = model.detector.roi_head.bbox_head.num_classes
    cfg = test_config(config, data, size, work, proposals, num_classes)
    ckpt = work / 'float.pth'
    torch.save(dict(state_dict=model.float_detector.state_dict(), meta={}), ckpt)
    exp = work / 'faster_export'
    det_cfg = copy.deepcopy(mcfg.detector)
    det_cfg.test_cfg.rpn.update(nms_pre=proposals, max_per_img=proposals)
    export_model(model, det_cfg, exp)
    res = {'float detector (PyTorch)': run_test(cfg, ckpt),
           'integer ONNX (onnxruntime)': run_test(cfg, exp / 'model.onnx'),
           'integer engine (.fqnint)': run_test(cfg, exp / 'model.fqnint')}
    return {k: statistics.median(v) for k, v in res.items()}


def roi_align_speed(size_hw, channels: int, n_rois: int, repeats: int):
    """Integer RoIAlign vs mmcv's float RoIAlign (as mmdet's SingleRoIExtractor runs it) on the same RoIs."""
    import torch
    from mmcv.ops import RoIAlign

    from fqn_det.export.graph import TensorQ
    from fqn_det.export.roi_align import integer_roi_align, map_roi_levels
    g = torch.Generator().manual_seed(0)
    h, w = size_hw
    strides = [4, 8, 16, 32]
    feats = [torch.randint(0, 16, (1, channels, -(-h // s), -(-w // s)), generator=g) for s in strides]
    tqs = [TensorQ(0.05, 3, 0, 15) for _ in strides]
    out_q = TensorQ(0.05, 3, 0, 15)
    xy = torch.rand(n_rois, 2, generator=g) * torch.tensor([w * 0.8, h * 0.8])
    wh = torch.exp(torch.rand(n_rois, 2, generator=g) * 5.5) + 8
    rois = torch.cat([torch.zeros(n_rois, 1), xy, xy + wh], 1)
    float_feats = [((f - 3) * 0.05).float() for f in feats]
    layers = [RoIAlign((7, 7), 1.0 / s, 0, aligned=True) for s in strides]

    def mmcv_float():
        lv = map_roi_levels(rois, 4)
        out = float_feats[0].new_zeros(n_rois, channels, 7, 7)
        for i, layer in enumerate(layers):
            idx = (lv == i).nonzero().squeeze(1)
            if idx.numel():
                out[idx] = layer(float_feats[i], rois[idx])
        return out

    from export_models import timed
    return timed({'integer RoIAlign': lambda: integer_roi_align(feats, tqs, rois, out_q, strides, (7, 7)),
                  'mmcv RoIAlign (float)': mmcv_float}, repeats)


def engine_vs_pytorch(model, graph, size: int, repeats: int):
    """Integer engine vs the FP32 PyTorch detector body on one image (same part of the network)."""
    import torch

    from export_models import FloatBody, timed
    from fqn_det.export.engine import IntegerEngine
    img = torch.randn(1, 3, size, size)
    eng = IntegerEngine(graph)
    body = FloatBody.wrap(model.float_detector)

    def float_fwd():
        with torch.no_grad():
            body(img)

    res = timed({'integer engine': lambda: eng.run({'image': img}), 'FP32 PyTorch': float_fwd}, repeats)
    return res, eng.float64_layers
