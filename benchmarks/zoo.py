"""Every RetinaNet and Faster R-CNN config of mmdet's model zoo through fqn_det, on tiny inputs.

Configs are discovered in the installed mmdet package (``mmdet/.mim/configs``).
Each model is narrowed (channel widths only: backbone type, depth, groups,
dilations, strides, C4 / DC5 / FPN layout and head types are kept as
configured) and run on 64 px images: conversion to FQN QAT, one loss step,
calibration, predict, integer export, and the exported ONNX graph(s) run in
onnxruntime. Configs with identical (narrowed) model dicts run once.

Usage::

    python benchmarks/zoo.py [--out benchmarks/results/zoo.md]
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch

FAMILIES = ('retinanet', 'faster_rcnn')
EXCLUDE = ('retinanet_tta.py',)  # test-time augmentation wrapper, not a model
#: other families whose configs must either work or raise UnsupportedModuleError
OTHER_FAMILIES = ('cascade_rcnn', 'mask_rcnn', 'ssd', 'atss', 'fcos', 'gfl', 'yolo', 'libra_rcnn', 'fsaf',
                  'free_anchor', 'reppoints', 'paa')
IMAGE = 64
WIDTH_DIV = 8  # backbone base width 64 -> 8
HEAD_WIDTH = 32  # GroupNorm heads (other families) need 32 groups


def configs_dir() -> Path:
    import mmdet
    return Path(mmdet.__file__).parent / '.mim' / 'configs'


def discover(families=FAMILIES) -> List[Path]:
    """The model configs of ``families`` in the installed mmdet (sorted)."""
    out = []
    for fam in families:
        out += sorted(p for p in (configs_dir() / fam).glob('*.py') if p.name not in EXCLUDE)
    return out


def load_model_cfg(path: Path):
    from mmengine.config import Config
    return Config.fromfile(str(path)).model


def _div(v):
    return [c // WIDTH_DIV for c in v] if isinstance(v, (list, tuple)) else v // WIDTH_DIV


def narrow(model) -> dict:
    """``model`` with narrow channels and small sample counts; its topology unchanged.

    mmdet's ``ResLayer`` shared head (C4) has its widths fixed by its depth, so C4 models
    keep their widths.
    """
    m = copy.deepcopy(model)
    m.backbone.init_cfg = None
    m.backbone.pop('pretrained', None)
    roi = m.get('roi_head')
    c4 = roi is not None and roi.get('shared_head') is not None
    if m.backbone.type in ('ResNet', 'ResNeXt') and not c4:
        m.backbone.base_channels = 64 // WIDTH_DIV
        if m.backbone.type == 'ResNeXt':
            m.backbone.base_width = 1  # keep groups; per-group width 1 at the first stage
        if m.get('neck') is not None:
            m.neck.in_channels = _div(m.neck.in_channels)
            m.neck.out_channels = HEAD_WIDTH
            feat = HEAD_WIDTH
        else:  # DC5: the heads read the last stage directly
            feat = _div(m.rpn_head.in_channels)
        for head in ('bbox_head', 'rpn_head'):
            if m.get(head) is not None:
                m[head].in_channels = feat
                if m[head].type == 'FCOSHead':  # GroupNorm (32 groups): 2 channels per group, so a 1x1 level
                    m[head].feat_channels = 2 * HEAD_WIDTH  # still has 2 values per group in training
                elif 'feat_channels' in m[head]:
                    m[head].feat_channels = HEAD_WIDTH
        if roi is not None:
            roi.bbox_roi_extractor.out_channels = feat
            roi.bbox_head.in_channels = feat
            for k in ('fc_out_channels', 'conv_out_channels'):
                if k in roi.bbox_head:
                    roi.bbox_head[k] = 2 * HEAD_WIDTH
    if roi is not None:
        m.train_cfg.rpn_proposal.max_per_img = 64
        m.train_cfg.rcnn.sampler.num = 32
        m.test_cfg.rpn.max_per_img = 32
    return m


def _key(model) -> str:
    d = model.to_dict() if hasattr(model, 'to_dict') else model
    return json.dumps(d, sort_keys=True, default=str)


def _num_classes(det) -> int:
    head = getattr(det, 'bbox_head', None)
    if head is None:
        head = det.roi_head.bbox_head
    return head.num_classes


def _batch(num_classes: int, seed: int) -> dict:
    from mmdet.testing import demo_mm_inputs
    torch.manual_seed(seed)
    data = demo_mm_inputs(batch_size=1, image_shapes=(3, IMAGE, IMAGE), num_classes=max(num_classes, 2))
    for s in data['data_samples']:  # single-class configs (person detection)
        s.gt_instances.labels = s.gt_instances.labels.clamp(max=num_classes - 1)
    return data


def run_pipeline(model_cfg) -> Dict[str, float]:
    """Convert, calibrate, one loss step, predict, export, run the ONNX graphs. Returns timings."""
    from mmdet.registry import MODELS
    from mmengine.optim import OptimWrapper

    from fqn_det.export.exporter import ONNX_FILE, ROI_ONNX_FILE, export_model
    from fqn_det.export.onnx_writer import ort_session, run_onnx
    from fqn_det.quant import finish_calibration, start_calibration
    t = {}
    t0 = time.perf_counter()
    model = MODELS.build(dict(type='QuantizedDetector', detector=copy.deepcopy(model_cfg)))
    t['convert'] = time.perf_counter() - t0
    nc = _num_classes(model.detector)
    data = _batch(nc, 0)
    t0 = time.perf_counter()
    model.eval()
    start_calibration(model)
    with torch.no_grad():
        model(**model.data_preprocessor(data, False), mode='tensor')
    finish_calibration(model, 0.999)
    model.calibrated.fill_(1)
    t['calibrate'] = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.train()
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=1e-3))
    losses = model.train_step(_batch(nc, 1), optim)
    total = sum(float(v) for k, v in losses.items() if 'loss' in k)
    if not np.isfinite(total):
        raise FloatingPointError(f'non-finite loss {losses}')
    t['loss_step'] = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.eval()
    with torch.no_grad():
        preds = model.test_step(data)
    assert len(preds) == 1 and hasattr(preds[0], 'pred_instances')
    t['predict'] = time.perf_counter() - t0
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / 'export'
        export_model(model, model_cfg, out)
        t['export'] = time.perf_counter() - t0
        t0 = time.perf_counter()
        with torch.no_grad():
            image = model.data_preprocessor(data, False)['inputs'].numpy()
        res = run_onnx(ort_session(out / ONNX_FILE), {'image': image})
        assert all(np.isfinite(v).all() for v in res.values())
        if (out / ROI_ONNX_FILE).exists():
            ext = model.detector.roi_head.bbox_roi_extractor
            s = ext.roi_layers[0].output_size
            s = s if isinstance(s, (tuple, list)) else (s, s)
            g = torch.Generator().manual_seed(0)
            q = ext.out_quant
            feats = torch.randint(int(q.scheme.quant_min), int(q.scheme.quant_max) + 1,
                                  (4, ext.out_channels, *s), generator=g).numpy().astype(np.uint8)
            r = run_onnx(ort_session(out / ROI_ONNX_FILE), {'roi_feats': feats})
            assert r['cls_score'].shape[0] == 4 and np.isfinite(r['bbox_pred']).all()
        t['onnxruntime'] = time.perf_counter() - t0
    return t


def unique_models(paths: List[Path]) -> List[Tuple[dict, List[Path]]]:
    """``(narrowed model config, configs with that very model)``, in discovery order."""
    groups: Dict[str, Tuple[dict, List[Path]]] = {}
    for p in paths:
        cfg = narrow(load_model_cfg(p))
        groups.setdefault(_key(cfg), (cfg, []))[1].append(p)
    return list(groups.values())


def run_zoo(paths: List[Path], log=print) -> List[Tuple[str, str, str]]:
    """``(config, 'pass' | 'fail', detail)`` for each config; identical models run once."""
    done: Dict[str, Tuple[str, str]] = {}
    rows = []
    for p in paths:
        rel = f'{p.parent.name}/{p.name}'
        try:
            cfg = narrow(load_model_cfg(p))
        except Exception as e:  # a config this narrowing cannot read is a failure too
            rows.append((rel, 'fail', f'narrowing: {type(e).__name__}: {e}'))
            log(f'{rel}: fail ({rows[-1][2]})')
            continue
        k = _key(cfg)
        if k in done:
            status, detail = done[k][0], f'same model as {done[k][1]}'
        else:
            try:
                t = run_pipeline(cfg)
                status, detail = 'pass', ', '.join(f'{n} {v:.1f}s' for n, v in t.items())
            except Exception as e:
                status = 'fail'
                detail = f'{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""}'
                traceback.print_exc(file=sys.stderr)
            done[k] = (status, rel)
        rows.append((rel, status, detail))
        log(f'{rel}: {status} ({detail})')
    return rows


def check_other_family(path: Path) -> Tuple[str, str]:
    """``('works' | 'unsupported', detail)``; anything else raises."""
    from mmdet.registry import MODELS

    from fqn_det.nn import UnsupportedModuleError
    cfg = load_model_cfg(path)
    if cfg.get('backbone') is not None:
        cfg.backbone.init_cfg = None
    try:
        MODELS.build(dict(type='QuantizedDetector', detector=copy.deepcopy(cfg)))
    except UnsupportedModuleError as e:
        return 'unsupported', str(e)
    t = run_pipeline(cfg)  # converts: then it must go all the way
    return 'works', ', '.join(f'{n} {v:.1f}s' for n, v in t.items())


def markdown(rows, seconds: float) -> str:
    n_pass = sum(r[1] == 'pass' for r in rows)
    lines = ['# mmdet model zoo: RetinaNet and Faster R-CNN configs through fqn_det', '',
             f'{n_pass} of {len(rows)} configs pass (convert to FQN QAT, calibrate, one loss step, predict, '
             f'integer export, exported ONNX run in onnxruntime), on {IMAGE} px images with narrowed widths '
             '(topology as configured). Configs with identical models run once.', '',
             f'- generated by `python benchmarks/zoo.py` in {seconds:.0f} s; torch {torch.__version__}, '
             f'{platform.machine()}, {torch.get_num_threads()} threads, CPU capability '
             f'{torch.backends.cpu.get_cpu_capability()}', '',
             '| config | result | detail |', '|---|---|---|']
    lines += [f'| {c} | {s} | {d.replace("|", "/")} |' for c, s, d in rows]
    return '\n'.join(lines) + '\n'


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', default=str(Path(__file__).parent / 'results' / 'zoo.md'))
    args = ap.parse_args(argv)
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    import fqn_det  # noqa: F401
    from fqn_det.utils.atomic import atomic_write_bytes
    t0 = time.perf_counter()
    rows = run_zoo(discover())
    text = markdown(rows, time.perf_counter() - t0).encode()
    atomic_write_bytes(Path(args.out), lambda f: f.write(text))
    print(f'{sum(r[1] == "pass" for r in rows)} of {len(rows)} pass; written to {args.out}')
    return 0 if all(r[1] == 'pass' for r in rows) else 1


if __name__ == '__main__':
    sys.exit(main())
