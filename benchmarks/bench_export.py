"""Integer export speed and size: fqn_det's integer ONNX vs FP32 ONNX vs onnxruntime's own int8, side by side.

    python benchmarks/bench_export.py --out benchmarks/results/export_r50.md
    python benchmarks/bench_export.py --tiny --sizes 64 --repeats 1 --out /tmp/x.md   # machinery check

For RetinaNet and Faster R-CNN R50-FPN (random weights, calibrated on two
generated images: speed and size do not depend on the values), exports three
variants of each shipped int4 config (the paper default, symmetric weights,
per-channel head outputs) and runs them interleaved in this one process with
the FP32 ONNX model of the same network part and with onnxruntime's
``quantize_static`` int8 model of it (after ``quant_pre_process``), at each
image size. Records latency, file sizes, peak memory (a fresh process per
model), a per-op profile, the CPU's VNNI flag, the integer engine against the
FP32 PyTorch network, integer vs mmcv RoIAlign, and Faster R-CNN end to end
as ``tools/test.py`` runs it (float detector, integer ONNX, integer engine).
"""
import argparse
import shutil
import tempfile
from pathlib import Path

from common import write_results

DETECTORS = {
    'retina': ('RetinaNet R50-FPN', {'paper default': 'configs/fqn/retinanet_r50_fpn_fqn-w4a4_3e_coco.py',
                                     'symmetric weights': 'configs/fqn/retinanet_r50_fpn_fqn-w4a4_3e_coco.py',
                                     'per-channel head outputs':
                                         'configs/fqn/retinanet_r50_fpn_fqn-w4a4-floor-pc_3e_coco.py'}),
    'faster': ('Faster R-CNN R50-FPN (image -> FPN + RPN graph)',
               {'paper default': 'configs/fqn/faster-rcnn_r50_fpn_fqn-w4a4_3e_coco.py',
                'symmetric weights': 'configs/fqn/faster-rcnn_r50_fpn_fqn-w4a4_3e_coco.py',
                'per-channel head outputs': 'configs/fqn/faster-rcnn_r50_fpn_fqn-w4a4-pc_3e_coco.py'}),
}
FP32, ORT8 = 'FP32 ONNX', 'onnxruntime int8 (quantize_static)'


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--detectors', nargs='+', default=['retina', 'faster'], choices=list(DETECTORS))
    p.add_argument('--sizes', nargs='+', default=['512', '800x1344'], help='HxW or S (square)')
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--calib-size', type=int, default=256)
    p.add_argument('--e2e-size', type=int, default=320, help='Faster R-CNN end-to-end image size')
    p.add_argument('--e2e-images', type=int, default=3, help='timed images (plus one warm-up)')
    p.add_argument('--proposals', type=int, default=1000)
    p.add_argument('--tiny', action='store_true', help='tiny widths (checks the machinery only)')
    p.add_argument('--out', help='write the results markdown here')
    return p.parse_args(argv)


def _hw(s: str):
    h, _, w = s.partition('x')
    return int(h), int(w or h)


def bench_detector(kind: str, args, work: Path) -> dict:
    import numpy as np
    import onnx

    from export_models import (build_calibrated, checkpoint_bytes, fp32_onnx, op_profile, ort_int8,
                               peak_rss_mb, timed)
    from fqn_det.export.exporter import export_model
    from fqn_det.export.int_model import load_int_model
    from fqn_det.export.onnx_writer import ort_session, to_onnx
    title, variants = DETECTORS[kind]
    wd = work / kind
    wd.mkdir()
    files, sizes, models, extra = {}, {}, {}, {}
    for variant, config in variants.items():
        model, mcfg = build_calibrated(config, variant, args.calib_size, args.tiny)
        out = wd / variant.replace(' ', '_')
        rep = export_model(model, mcfg.detector, out)
        graphs, _ = load_int_model(out / 'model.fqnint')
        o17 = to_onnx(graphs['features'], opset=17)
        files[variant] = out / 'model.onnx'
        sizes[variant] = dict(fqnint=rep['files']['model.fqnint'], onnx=rep['files']['model.onnx'],
                              onnx17=len(o17.SerializeToString()),
                              nodes=len(onnx.load(str(out / 'model.onnx')).graph.node))
        if variant == 'paper default':
            models['fp32 checkpoint'] = checkpoint_bytes(model.float_detector)
            extra['engine'] = (model, graphs['features'])
            extra['model'], extra['mcfg'] = model, mcfg
    fp32_onnx(extra['model'].float_detector, wd / 'fp32.onnx', args.calib_size)
    ort_int8(wd / 'fp32.onnx', wd / 'ort_int8.onnx', [_hw(args.sizes[0])], wd)
    files = {FP32: wd / 'fp32.onnx', ORT8: wd / 'ort_int8.onnx', **files}
    models[FP32] = (wd / 'fp32.onnx').stat().st_size
    models[ORT8] = (wd / 'ort_int8.onnx').stat().st_size
    sessions = {k: ort_session(p, args.threads) for k, p in files.items()}
    rng = np.random.default_rng(0)
    lat, mem, prof = {}, {}, {}
    for size in args.sizes:
        h, w = _hw(size)
        feed = {'image': rng.standard_normal((1, 3, h, w)).astype(np.float32)}
        lat[size] = timed({k: (lambda s=s: s.run(None, feed)) for k, s in sessions.items()}, args.repeats)
        mem[size] = {k: peak_rss_mb(p, h, w, args.threads) for k, p in files.items()}
        if size == args.sizes[0]:
            prof = {k: op_profile(p, feed, args.threads, wd) for k, p in files.items()}
    from export_e2e import engine_vs_pytorch
    h0 = _hw(args.sizes[0])[0]
    eng, f64 = engine_vs_pytorch(extra['engine'][0], extra['engine'][1], h0, max(1, args.repeats // 2))
    return dict(title=title, lat=lat, mem=mem, prof=prof, sizes=sizes, models=models, engine=eng, f64=f64,
                model=extra['model'], mcfg=extra['mcfg'])


def _fmt_lat(r: dict, sizes) -> list:
    keys = list(r['lat'][sizes[0]])
    head = '| model | ' + ' | '.join(f'{s}: ms | vs FP32 | vs ort int8' for s in sizes) + ' |'
    lines = [head, '|---|' + '---|---|---|' * len(sizes)]
    for k in keys:
        cells = []
        for s in sizes:
            t = r['lat'][s]
            cells.append(f'{t[k] * 1e3:.0f} | {t[FP32] / t[k]:.2f}x | {t[ORT8] / t[k]:.2f}x')
        lines.append(f'| {k} | ' + ' | '.join(cells) + ' |')
    return lines


def report(results: dict, args, flags: dict, e2e, roi) -> str:
    sizes = args.sizes
    out = []
    targets = []
    for kind, r in results.items():
        fp = r['models']['fp32 checkpoint']
        out += [f'## {r["title"]}', '', 'Latency (median, interleaved; ratios are speed-ups: >1 is faster):', '']
        out += _fmt_lat(r, sizes)
        out += ['', '| file | MB | vs FP32 checkpoint |', '|---|---|---|',
                f'| FP32 checkpoint | {fp / 1e6:.2f} | 1.000x |']
        for k in (FP32, ORT8):
            out.append(f'| {k} | {r["models"][k] / 1e6:.2f} | {r["models"][k] / fp:.3f}x |')
        for v, s in r['sizes'].items():
            out.append(f'| {v}: model.onnx (opset 21, INT4 weights; {s["nodes"]} nodes) | {s["onnx"] / 1e6:.2f} | '
                       f'{s["onnx"] / fp:.3f}x |')
            out.append(f'| {v}: opset-17 ONNX (8-bit containers) | {s["onnx17"] / 1e6:.2f} | {s["onnx17"] / fp:.3f}x |')
            out.append(f'| {v}: model.fqnint | {s["fqnint"] / 1e6:.2f} | {s["fqnint"] / fp:.3f}x |')
        out += ['', 'Peak resident memory of a fresh process loading the model and running one image (MB):', '',
                '| model | ' + ' | '.join(sizes) + ' |', '|---|' + '---|' * len(sizes)]
        for k in r['mem'][sizes[0]]:
            out.append(f'| {k} | ' + ' | '.join(f'{r["mem"][s][k]:.0f}' for s in sizes) + ' |')
        out += ['', f'Per-op profile ({sizes[0]}, share of node time, onnxruntime profiler):', '']
        out += [f'- {k}: {v}' for k, v in r['prof'].items()]
        e = r['engine']
        out += ['', f'Integer engine vs FP32 PyTorch, same network part, {sizes[0]}: '
                f'{e["integer engine"] * 1e3:.0f} ms vs {e["FP32 PyTorch"] * 1e3:.0f} ms '
                f'({e["integer engine"] / e["FP32 PyTorch"]:.2f}x the time); float64 layers: '
                f'{", ".join(r["f64"]) or "none (every convolution in float32)"}', '']
        if kind == 'retina':
            targets += _retina_targets(r, sizes, flags)
        worst = max(s['onnx'] / fp for s in r['sizes'].values())
        targets.append(f'- {r["title"]}: ONNX file <= 0.13x the FP32 checkpoint with 4-bit weights in 4 bits: '
                       f'{"met" if worst <= 0.13 else "missed"} (largest variant {worst:.3f}x)')
    if e2e is not None:
        fl, on = e2e['float detector (PyTorch)'], e2e['integer ONNX (onnxruntime)']
        en = e2e['integer engine (.fqnint)']
        out += [f'## Faster R-CNN end to end (tools/test.py runner, {args.e2e_size} px, {args.proposals} proposals, '
                f'median of {args.e2e_images} images)', '', '| model | s / image | vs float detector |',
                '|---|---|---|']
        out += [f'| {k} | {v:.3f} | {v / fl:.2f}x the time |' for k, v in e2e.items()]
        targets.append(f'- Faster R-CNN test time per image (integer ONNX, {args.proposals} proposals) <= the '
                       f'float detector\'s: {"met" if on <= fl else "missed"} ({on / fl:.2f}x the float time)')
        targets.append(f'- integer engine <= 3x the FP32 PyTorch detector per image: '
                       f'{"met" if en <= 3 * fl else "missed"} ({en / fl:.2f}x)')
        out.append('')
    if roi is not None:
        ri, rf = roi['integer RoIAlign'], roi['mmcv RoIAlign (float)']
        out += [f'RoIAlign alone, {args.proposals} RoIs on {roi["channels"]}-channel FPN levels of a {roi["image"]} '
                f'image: integer {ri * 1e3:.0f} ms, mmcv float {rf * 1e3:.0f} ms ({ri / rf:.2f}x the time)', '']
        targets.append(f'- integer RoIAlign <= 2x mmcv\'s float RoIAlign on the same RoIs: '
                       f'{"met" if ri <= 2 * rf else "missed"} ({ri / rf:.2f}x)')
    return '\n'.join(['## Targets', ''] + targets + [''] + out)


def _retina_targets(r, sizes, flags) -> list:
    s = sizes[0]
    t = r['lat'][s]
    variants = list(r['sizes'])
    speed = {v: t[FP32] / t[v] for v in variants}
    vs_ort = {v: t[ORT8] / t[v] for v in variants}
    pc = t['per-channel head outputs'] / t['paper default'] - 1
    figures = (f'measured here ({s}): ' + ', '.join(f'{v} {speed[v]:.2f}x FP32 / {vs_ort[v]:.2f}x ort int8'
                                                   for v in variants)
               + f'; per-channel head outputs {100 * pc:+.1f} % time vs the paper default')
    if not flags['vnni']:
        return [f'- VNNI targets (int4 RetinaNet ONNX >= 2.5x FP32 ONNX and >= onnxruntime int8; per-channel head '
                f'outputs within 5 % of per-tensor): not measurable here, this CPU has no VNNI; {figures}']
    ok = all(v >= 2.5 for v in speed.values()) and all(v >= 1.0 for v in vs_ort.values()) and pc <= 0.05
    return [f'- int4 RetinaNet ONNX >= 2.5x FP32 ONNX, >= onnxruntime int8, per-channel within 5 %: '
            f'{"met" if ok else "missed"}; {figures}']


def _run(args, work: Path):
    results = {k: bench_detector(k, args, work) for k in args.detectors}
    e2e = roi = None
    if 'faster' in results:
        from export_e2e import faster_end_to_end, roi_align_speed
        r = results['faster']
        cfg = DETECTORS['faster'][1]['paper default']
        e2e = faster_end_to_end(r['model'], r['mcfg'], cfg, work / 'e2e', args.e2e_size, args.e2e_images,
                                args.proposals)
        ch = r['model'].detector.roi_head.bbox_roi_extractor.out_channels
        hw = (64, 96) if args.tiny else (800, 1344)
        roi = dict(roi_align_speed(hw, ch, args.proposals, args.repeats), channels=ch, image=f'{hw[0]}x{hw[1]}')
    return results, e2e, roi


def main(argv=None):
    args = parse_args(argv)
    import torch
    from mmdet.utils import register_all_modules

    import fqn_det  # noqa: F401
    from export_models import baseline_rss_mb, cpu_flags
    register_all_modules()
    torch.set_num_threads(args.threads)
    flags = cpu_flags()
    work = Path(tempfile.mkdtemp(prefix='fqn_bench_export_'))
    try:
        results, e2e, roi = _run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # only the temporary folder this run created
    settings = [f'CPU flags: AVX2 {"yes" if flags["avx2"] else "no"}, AVX-512 {"yes" if flags["avx512f"] else "no"}, '
                f'VNNI {"yes" if flags["vnni"] else "no"} (from /proc/cpuinfo)',
                f'{args.threads} threads; median of {args.repeats} interleaved runs after a warm-up; sizes '
                f'{", ".join(args.sizes)}; calibration on 2 generated {args.calib_size} px images; random weights',
                f'process baseline (python + onnxruntime imported): {baseline_rss_mb():.0f} MB resident',
                'integer ONNX: fqn_det export at opset 21 (INT4/UINT4 weights, zero-centred int8 after Cast)',
                'onnxruntime int8: quant_pre_process, then quantize_static (QDQ, uint8 activations, int8 weights)'
                f', calibrated on one {args.sizes[0]} image']
    text = report(results, args, flags, e2e, roi)
    if args.out:
        write_results(args.out, 'Integer export: speed and size', settings, text)
    else:
        print(text)


if __name__ == '__main__':
    main()
