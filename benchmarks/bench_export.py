"""ONNX Runtime latency and file size: FP32 ONNX vs fqn_det integer ONNX, side by side.

    python benchmarks/bench_export.py                      # RetinaNet R50-FPN, 512x512
    python benchmarks/bench_export.py --size 320 --repeats 5 --out benchmarks/results/export.md

Builds the detector from the config (random weights: speed and size do not
depend on the values), calibrates on generated images, exports the integer
model with asymmetric (paper default) and symmetric per-channel weights, and
exports the float detector's body + heads to FP32 ONNX. All three run in this
one process, interleaved, on the same input: ratios are measured side by side.
"""
import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path


from common import machine


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--config', default='configs/fqn/retinanet_r50_fpn_fqn-w4a4_3e_coco.py')
    p.add_argument('--size', type=int, default=512)
    p.add_argument('--repeats', type=int, default=7)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--out', help='write the results markdown here')
    return p.parse_args()


class FloatBody:
    """The float detector's backbone + neck + head as one module, flat outputs."""

    @staticmethod
    def wrap(det):
        import torch

        class Body(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.det = det

            def forward(self, x):
                cls, reg = self.det.bbox_head(self.det.extract_feat(x))
                return tuple(cls) + tuple(reg)

        return Body().eval()


def single_conv(threads: int, repeats: int) -> dict:
    """A reference point: one 128->128 3x3 conv at 64x64, FP32 Conv vs QLinearConv."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from fqn_det.export.onnx_writer import ort_session
    c, h = 128, 64
    rng = np.random.default_rng(0)

    def model(nodes, x_type, inits):
        g = helper.make_graph(nodes, 'g', [helper.make_tensor_value_info('x', x_type, [1, c, h, h])],
                              [helper.make_tensor_value_info('y', x_type, None)], inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid('', 17)])
        m.ir_version = 8
        return m

    def qconv(wdt, wz):
        lo, hi = (-7, 8) if wdt == np.int8 else (0, 16)
        inits = [numpy_helper.from_array(np.array(0.1, np.float32), 'xs'),
                 numpy_helper.from_array(np.array(3, np.uint8), 'xz'),
                 numpy_helper.from_array(rng.integers(lo, hi, (c, c, 3, 3)).astype(wdt), 'w'),
                 numpy_helper.from_array(np.full(c, 0.01, np.float32), 'ws'),
                 numpy_helper.from_array(np.full(c, wz, wdt), 'wz'),
                 numpy_helper.from_array(np.array(0.2, np.float32), 'ys'),
                 numpy_helper.from_array(np.array(0, np.uint8), 'yz')]
        return model([helper.make_node('QLinearConv', ['x', 'xs', 'xz', 'w', 'ws', 'wz', 'ys', 'yz'], ['y'],
                                       pads=[1, 1, 1, 1])], TensorProto.UINT8, inits)

    fp = model([helper.make_node('Conv', ['x', 'w'], ['y'], pads=[1, 1, 1, 1])], TensorProto.FLOAT,
               [numpy_helper.from_array(rng.standard_normal((c, c, 3, 3)).astype(np.float32), 'w')])
    xf = rng.standard_normal((1, c, h, h)).astype(np.float32)
    xq = rng.integers(0, 16, (1, c, h, h)).astype(np.uint8)
    runs = {'fp32': (ort_session(fp, threads), xf), 'int8 sym': (ort_session(qconv(np.int8, 0), threads), xq),
            'int8 asym': (ort_session(qconv(np.int8, 2), threads), xq),
            'uint8 asym': (ort_session(qconv(np.uint8, 7), threads), xq)}
    return _time({k: (lambda s=s, x=x: s.run(None, {'x': x})) for k, (s, x) in runs.items()}, repeats * 3)


def _time(fns: dict, repeats: int) -> dict:
    for f in fns.values():  # warm-up
        f()
    times = {k: [] for k in fns}
    for _ in range(repeats):  # interleaved, so load changes hit every variant alike
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def main():
    args = parse_args()
    import numpy as np
    import onnx
    import torch
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    import fqn_det  # noqa: F401
    from fqn_det.export.exporter import export_model, fp32_checkpoint_bytes
    from fqn_det.export.onnx_writer import ort_session
    from fqn_det.quant import finish_calibration, start_calibration
    register_all_modules()
    cfg = Config.fromfile(args.config)
    torch.manual_seed(0)
    img = torch.randn(1, 3, args.size, args.size)
    work = Path(tempfile.mkdtemp(prefix='fqn_bench_'))
    sessions, sizes = {}, {}
    for name, sym in (('int4 asym', False), ('int4 sym', True)):
        mcfg = cfg.model.copy()
        mcfg.quant_cfg = dict(mcfg.quant_cfg, weight=dict(mcfg.quant_cfg.weight, symmetric=sym))
        model = MODELS.build(mcfg)
        model.init_weights()
        model.eval()
        start_calibration(model.detector)
        with torch.no_grad():
            for s in range(2):
                model.detector.extract_feat(torch.randn(1, 3, args.size, args.size))
                model.detector.bbox_head(model.detector.extract_feat(img))
        finish_calibration(model.detector)
        model.calibrated.fill_(1)
        rep = export_model(model, mcfg.detector, work / name.replace(' ', '_'))
        sessions[name] = ort_session(work / name.replace(' ', '_') / 'model.onnx', args.threads)
        sizes[name] = rep['files']['model.fqnint']
        sizes['fp32 checkpoint'] = fp32_checkpoint_bytes(model)
        sizes[f'{name} onnx'] = rep['files']['model.onnx']
        float_det = model.float_detector
    buf = io.BytesIO()
    torch.onnx.export(FloatBody.wrap(float_det), (img,), buf, dynamo=False, input_names=['image'],
                      opset_version=17)
    fp_model = onnx.load_from_string(buf.getvalue())
    sizes['fp32 onnx'] = len(buf.getvalue())
    sessions['fp32'] = ort_session(fp_model, args.threads)
    feed = {'image': img.numpy().astype(np.float32)}
    med = _time({k: (lambda s=s: s.run(None, feed)) for k, s in sessions.items()}, args.repeats)
    layer = single_conv(args.threads, args.repeats)
    lines = [f'# Integer ONNX vs FP32 ONNX ({Path(args.config).name}, {args.size}x{args.size}, '
             f'{args.threads} threads, median of {args.repeats})', '', f'Machine: {machine()}', '',
             '| model | median latency (ms) | speed-up vs FP32 |', '|---|---|---|']
    for k in ('fp32', 'int4 asym', 'int4 sym'):
        lines.append(f'| {k} | {med[k] * 1e3:.1f} | {med["fp32"] / med[k]:.2f}x |')
    lines += ['', 'Single layer (QLinearConv 128->128, 3x3, 64x64, same threads):', '',
              '| weights | median latency (ms) | speed-up vs FP32 Conv |', '|---|---|---|']
    for k, v in layer.items():
        lines.append(f'| {k} | {v * 1e3:.2f} | {layer["fp32"] / v:.2f}x |')
    fp = sizes['fp32 checkpoint']
    lines += ['', '| file | MB | vs FP32 checkpoint |', '|---|---|---|']
    for k, v in sizes.items():
        lines.append(f'| {k} | {v / 1e6:.2f} | {v / fp:.3f}x |')
    target_speed = med['fp32'] / med['int4 sym'] >= 2.5
    target_size = sizes['int4 sym'] / fp <= 0.15
    lines += ['', f'Targets: integer ONNX (symmetric) >= 2.5x faster than FP32: '
              f'{"met" if target_speed else "missed"} ({med["fp32"] / med["int4 sym"]:.2f}x); '
              f'packed 4-bit file <= 0.15x FP32: {"met" if target_size else "missed"} '
              f'({sizes["int4 sym"] / fp:.3f}x)']
    text = '\n'.join(lines) + '\n'
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)


if __name__ == '__main__':
    main()
