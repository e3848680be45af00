"""Models and runners for bench_export.py: calibrated random-weight detectors, FP32 / int8 ONNX, timing."""
import copy
import io
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cpu_flags() -> dict:
    """AVX2 / AVX-512 / VNNI flags of this CPU, read from /proc/cpuinfo."""
    from fqn_det.utils.machine import cpu_model_and_flags
    flags = set(cpu_model_and_flags()[1])
    return dict(avx2='AVX2' in flags, avx512f='AVX512F' in flags, vnni=bool({'AVX512-VNNI', 'AVX-VNNI'} & flags))


def build_calibrated(config: str, variant: str, size: int, tiny: bool = False):
    """A QuantizedDetector from ``config`` (random weights), calibrated on two generated images.

    ``variant``: ``'paper default'`` (the config as shipped), ``'symmetric weights'``
    (``weight.symmetric=True``) or a config path's variant given by the caller.
    """
    import torch
    from mmdet.registry import MODELS
    from mmdet.testing import demo_mm_inputs
    from mmengine.config import Config

    from fqn_det.quant import finish_calibration, start_calibration
    cfg = Config.fromfile(str(ROOT / config))
    mcfg = copy.deepcopy(cfg.model)
    if variant == 'symmetric weights':
        mcfg.quant_cfg = dict(mcfg.quant_cfg, weight=dict(mcfg.quant_cfg.weight, symmetric=True))
    if tiny:
        _narrow(mcfg.detector)
    torch.manual_seed(0)
    model = MODELS.build(mcfg)
    if not tiny:  # mmdet's head init (std 0.01) makes a tiny random network's head inputs vanish
        model.init_weights()
    model.eval()
    head = getattr(model.detector, 'bbox_head', None) or model.detector.roi_head.bbox_head
    data = demo_mm_inputs(batch_size=2, image_shapes=(3, size, size), num_classes=head.num_classes)
    start_calibration(model)
    with torch.no_grad():
        d = model.data_preprocessor(data, False)
        model(**d, mode='tensor')
    finish_calibration(model)
    model.calibrated.fill_(1)
    return model, mcfg


def _narrow(det) -> None:
    """Tiny widths for the fast test of this script's machinery."""
    det.backbone.update(depth=18, base_channels=8)
    det.neck.update(in_channels=[8, 16, 32, 64], out_channels=16)
    if 'bbox_head' in det:
        det.bbox_head.update(in_channels=16, feat_channels=16)
    else:
        det.rpn_head.update(in_channels=16, feat_channels=16)
        det.roi_head.bbox_roi_extractor.out_channels = 16
        det.roi_head.bbox_head.update(in_channels=16, fc_out_channels=32)


class FloatBody:
    """The float detector's part that the integer ``features`` graph replaces, flat outputs."""

    @staticmethod
    def wrap(det):
        import torch

        class Body(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.det = det

            def forward(self, x):
                feats = self.det.extract_feat(x)
                if hasattr(self.det, 'bbox_head'):
                    cls, reg = self.det.bbox_head(feats)
                    return tuple(cls) + tuple(reg)
                cls, reg = self.det.rpn_head(feats)
                return tuple(cls) + tuple(reg) + tuple(feats[:4])

        return Body().eval()


def fp32_onnx(det, path: Path, size: int) -> None:
    import torch
    img = torch.randn(1, 3, size, size)
    body = FloatBody.wrap(det)
    with torch.no_grad():
        n_out = len(body(img))
    names = [f'o{i}' for i in range(n_out)]
    torch.onnx.export(body, (img,), str(path), dynamo=False, input_names=['image'], output_names=names,
                      opset_version=17, dynamic_axes={'image': {2: 'h', 3: 'w'}})


def ort_int8(fp32_path: Path, out: Path, shapes, work: Path) -> None:
    """onnxruntime's own static int8 model (QDQ, U8S8, as its docs recommend for x86), after quant_pre_process."""
    import numpy as np
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = work / 'fp32_pre.onnx'
    quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=False)

    class Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(0)
            self.items = iter([{'image': rng.standard_normal((1, 3, h, w)).astype(np.float32)} for h, w in shapes])

        def get_next(self):
            return next(self.items, None)

    quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8)


def timed(fns: dict, repeats: int) -> dict:
    """Median seconds per call; calls interleaved, so load changes hit every variant alike."""
    for f in fns.values():  # warm-up
        f()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


_HWM = ('def hwm():\n'
        '    for line in open("/proc/self/status"):\n'
        '        if line.startswith("VmHWM:"):\n'
        '            return int(line.split()[1]) / 1024\n')


def peak_rss_mb(model_path: Path, h: int, w: int, threads: int) -> float:
    """Peak resident memory (MB, VmHWM) of a fresh process that loads ``model_path`` and runs one image.

    VmHWM belongs to the new process image (``ru_maxrss`` would carry the parent's peak across exec).
    """
    code = _HWM + ('import numpy as np, onnxruntime as ort\n'
                   'o = ort.SessionOptions(); o.intra_op_num_threads = %d; o.inter_op_num_threads = 1\n'
                   's = ort.InferenceSession(%r, o, providers=["CPUExecutionProvider"])\n'
                   's.run(None, {"image": np.random.default_rng(0).standard_normal((1, 3, %d, %d))'
                   '.astype(np.float32)})\n'
                   'print(hwm())') % (threads, str(model_path), h, w)
    res = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True, timeout=600)
    return float(res.stdout.strip().splitlines()[-1])


def baseline_rss_mb() -> float:
    code = _HWM + 'import onnxruntime, numpy\nprint(hwm())'
    res = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True, timeout=600)
    return float(res.stdout.strip().splitlines()[-1])


def op_profile(model_path: Path, feed: dict, threads: int, work: Path, top: int = 4) -> str:
    """Share of node time per op type over one run (onnxruntime's profiler), the ``top`` largest."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.enable_profiling = True
    opts.profile_file_prefix = str(work / f'prof_{Path(model_path).stem}')
    s = ort.InferenceSession(str(model_path), opts, providers=['CPUExecutionProvider'])
    s.run(None, feed)
    events = json.loads(Path(s.end_profiling()).read_text())
    per_op = {}
    for e in events:
        if e.get('cat') == 'Node' and e.get('name', '').endswith('_kernel_time'):
            op = e.get('args', {}).get('op_name', '?')
            per_op[op] = per_op.get(op, 0) + e['dur']
    total = sum(per_op.values()) or 1
    items = sorted(per_op.items(), key=lambda kv: -kv[1])[:top]
    return ', '.join(f'{k} {100 * v / total:.0f}%' for k, v in items)


def checkpoint_bytes(module) -> int:
    import torch
    buf = io.BytesIO()
    torch.save(module.state_dict(), buf)
    return buf.tell()


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
