"""Fidelity of the three inference paths per bit width: fake-quant, integer engine, onnxruntime.

    python benchmarks/bench_fidelity.py --checkpoint work_dirs/demo/fp32.pth --data work_dirs/demo/data \
        --out benchmarks/results/fidelity_bits.md

Every row starts from the same FP32 checkpoint of the demo-width RetinaNet:
weights per channel, FQN percentile calibration of the activation ranges on
``--num-batches`` training batches (post-training, no fine-tuning), then the
integer export. Each row reports the COCO bbox mAP of the fake-quantized model
(evaluated integer-exactly, the default, and with the float arithmetic of
training), of the integer engine and of onnxruntime (the default export, and
``--onnx-requant exact``) on the same validation
split, and, on ``--compare-batches`` validation batches, the share of
head-output integers each path has identical to the integer-exact
fake-quantized model's and the largest difference in quantization steps.
"""
import argparse
import copy
import shutil
import tempfile
import time
from pathlib import Path

from bench_dfq import load_cfg
from common import write_results

SETTINGS = [(b, b) for b in range(2, 9)] + [(4, 8), (8, 4)]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--config', default='configs/fqn/retinanet_r18-tiny_fpn_fqn-w4a4_2e_synthetic.py')
    p.add_argument('--checkpoint', default='work_dirs/demo/fp32.pth', help='trained FP32 mmdet checkpoint')
    p.add_argument('--data', default='work_dirs/demo/data')
    p.add_argument('--img-size', type=int, default=128)
    p.add_argument('--num-batches', type=int, default=20, help='calibration batches')
    p.add_argument('--compare-batches', type=int, default=4, help='validation batches for the integer comparison')
    p.add_argument('--only', nargs='*', help='settings to run, e.g. W8A8 W4A8 (default: W2A2..W8A8, W4A8, W8A4)')
    p.add_argument('--note', default='', help='a sentence about the checkpoint, written to the results')
    p.add_argument('--out', help='write the results markdown here')
    from fqn_det.utils.cli import add_common_args
    add_common_args(p)
    return p.parse_args()


def fake_quant_integers(model, x) -> dict:
    """Head-output integer levels of the fake-quantized RetinaNet on batch ``x``."""
    import torch
    head = model.detector.bbox_head
    cls, reg = head(model.detector.extract_feat(x))
    fq = {}
    for lvl in range(len(cls)):
        for name, out, q in (('cls_score', cls, head.retina_cls), ('bbox_pred', reg, head.retina_reg)):
            oq = q.out_quant[lvl]
            s = oq.scale.double().reshape(1, -1, 1, 1) if oq.per_channel else oq.scale.double()
            z = oq.zero_point.reshape(1, -1, 1, 1) if oq.per_channel else oq.zero_point
            fq[f'{name}.{lvl}'] = torch.round(out[lvl].double() / s + z).long()
    return fq


def head_integers(model, engine, onnx: dict, loader, batches: int):
    """Head-output integers of the engine, onnxruntime (each ONNX export in ``onnx``) and float-arithmetic
    fake-quant against integer-exact fake-quant: (identical share, max steps) each."""
    import torch

    from fqn_det.nn.integer_eval import float_arithmetic
    g = engine.graphs['features']
    agree = {k: [0, 0, 0] for k in ('engine', *onnx, 'float')}  # identical, total, max difference
    with torch.no_grad():
        for i, data in enumerate(loader):
            if i == batches:
                break
            x = model.data_preprocessor(data, False)['inputs']
            fq = fake_quant_integers(model, x)
            with float_arithmetic():
                ints = {'float': fake_quant_integers(model, x)}
            ints['engine'] = engine.run('features', {'image': x})['_int']
            for name, session in onnx.items():
                o = session.run('features', {'image': x})
                ints[name] = {}
                for k in fq:
                    t = g.tensors[next(n for n in g.nodes if n.outputs[0] == k).inputs[0]]
                    scale, zp = t.broadcast(o[k].dim())
                    ints[name][k] = torch.round(o[k].double() / scale + zp).long()
            for path, got in ints.items():
                for k, ref in fq.items():
                    d = (got[k] - ref).abs()
                    a = agree[path]
                    a[0] += int((d == 0).sum())
                    a[1] += d.numel()
                    a[2] = max(a[2], int(d.max()))
    return {k: (v[0] / v[1], v[2]) for k, v in agree.items()}


def main():
    args = parse_args()
    if not Path(args.checkpoint).is_file():
        raise SystemExit(f'error: FP32 checkpoint not found: {args.checkpoint}')
    from mmdet.registry import MODELS
    from mmengine.runner import Runner, load_checkpoint

    from fqn_det.dfq.ptq import batch_runner, post_training_quantize
    from fqn_det.export.backends import load_backend
    from fqn_det.export.exporter import export_model
    from fqn_det.models.integer_detector import IntegerDetector
    from fqn_det.nn.integer_eval import float_arithmetic
    from fqn_det.utils.cli import build_runner

    work = Path(tempfile.mkdtemp(prefix='bench_fidelity_'))
    try:
        cfg = load_cfg(args.config, args)
        cfg.work_dir = str(work / 'runner')
        runner = build_runner(cfg)
        loader = Runner.build_dataloader(cfg.train_dataloader, seed=0)
        val_loader = Runner.build_dataloader(cfg.val_dataloader, seed=0)
        chosen = [s for s in SETTINGS if not args.only or f'W{s[0]}A{s[1]}' in args.only]
        rows = []
        for wb, ab in chosen:
            t = time.time()
            qc = copy.deepcopy(dict(cfg.model.quant_cfg))
            qc['weight'] = dict(qc.get('weight', {}), bits=wb)
            qc['act'] = dict(qc.get('act', {}), bits=ab)
            qc['dfq_init'] = False
            model = MODELS.build(dict(cfg.model, quant_cfg=qc))
            load_checkpoint(model, args.checkpoint, map_location='cpu', logger='silent')
            model.eval()
            post_training_quantize(model, ranges='calibrated',
                                   run_batches=batch_runner(model, loader, args.num_batches, seed=0))
            out, out_exact = work / f'w{wb}a{ab}', work / f'w{wb}a{ab}_exact'
            export_model(model, cfg.model.detector, out)
            export_model(model, cfg.model.detector, out_exact, onnx_requant='exact')
            runner.model = model
            maps = {'fake-quant': runner.test().get('coco/bbox_mAP', 0.0)}
            with float_arithmetic():
                maps['float'] = runner.test().get('coco/bbox_mAP', 0.0)
            for name, backend, f in (('engine', 'engine', out / 'model.fqnint'),
                                     ('onnxruntime', 'onnxruntime', out / 'model.onnx'),
                                     ('onnxruntime exact', 'onnxruntime', out_exact / 'model.onnx')):
                runner.model = IntegerDetector(str(f), backend, test_cfg=cfg.model.detector.get('test_cfg'),
                                               config_detector=cfg.model.detector.type)
                maps[name] = runner.test().get('coco/bbox_mAP', 0.0)
            eng, ort, ort_exact = (load_backend(d, b)[0] for d, b in ((out, 'engine'), (out, 'onnxruntime'),
                                                                       (out_exact, 'onnxruntime')))
            same = head_integers(model, eng, {'onnxruntime': ort, 'onnxruntime exact': ort_exact}, val_loader,
                                 args.compare_batches)
            rows.append((f'W{wb}A{ab}', maps, same, time.time() - t))
            print(f'W{wb}A{ab}: mAP fake-quant {maps["fake-quant"]:.4f} (float arithmetic {maps["float"]:.4f}) '
                  f'engine {maps["engine"]:.4f} onnxruntime {maps["onnxruntime"]:.4f} (exact requantization '
                  f'{maps["onnxruntime exact"]:.4f}); identical integers '
                  + ', '.join(f'{k} {100 * v[0]:.3f} % (max {v[1]})' for k, v in same.items()), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = ['| setting | fake-quant mAP | engine mAP | onnxruntime mAP | onnxruntime, exact requantization: mAP | '
             'engine: identical head-output integers (max steps) | onnxruntime: identical (max steps) | '
             'onnxruntime exact: identical (max steps) | float-arithmetic fake-quant: mAP | float: identical '
             '(max steps) | time |',
             '|---|---|---|---|---|---|---|---|---|---|---|']
    for name, m, s, secs in rows:
        cell = {k: f'{100 * v[0]:.3f} % ({v[1]})' for k, v in s.items()}
        lines.append(f"| {name} | {m['fake-quant']:.4f} | {m['engine']:.4f} | {m['onnxruntime']:.4f} | "
                     f"{m['onnxruntime exact']:.4f} | {cell['engine']} | {cell['onnxruntime']} | "
                     f"{cell['onnxruntime exact']} | {m['float']:.4f} | {cell['float']} | {secs:.0f}s |")
    table = '\n'.join(lines)
    print('\n' + table)
    if args.out:
        settings = [f'config: `{args.config}` (weights per channel, asymmetric), FP32 checkpoint '
                    f'`{args.checkpoint}`' + (f': {args.note}' if args.note else ''),
                    f'data: `{args.data}` at {args.img_size}px; calibration: {args.num_batches} training batches '
                    f'(post-training, no fine-tuning); integers compared on {args.compare_batches} validation '
                    'batches, all head outputs (5 levels, classification and box), each path against the '
                    'integer-exact fake-quantized model (the default evaluation)']
        write_results(args.out, 'Fidelity per bit width: fake-quant, integer engine, onnxruntime', settings, table)


if __name__ == '__main__':
    main()
