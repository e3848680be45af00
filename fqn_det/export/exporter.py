"""Export a calibrated, fine-tuned QuantizedDetector: integer file, ONNX, report.

Everything is written into a temporary sibling directory that is renamed to
the output directory only when every file is complete; the output directory
must be new, empty or a previous export (:mod:`.out_dir`).
"""
from __future__ import annotations

import io
import json
import shutil
from typing import Any, Dict

import torch

from ..quant import NotCalibratedError
from .detectors import build_graphs
from .graph import IntGraph
from .int_model import save_int_model
from .onnx_writer import OPSET, to_onnx
from .out_dir import EXPORT_MARK, check_out_dir, install_export, staging_dir
from .roi_align import WEIGHT_BITS, roi_meta

INT_FILE, ONNX_FILE, ROI_ONNX_FILE = 'model.fqnint', 'model.onnx', 'roi_head.onnx'


def _plain(obj):
    """Config -> JSON-able plain types."""
    if hasattr(obj, 'to_dict'):
        obj = obj.to_dict()
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def fp32_checkpoint_bytes(model) -> int:
    """Size of the float detector's ordinary FP32 checkpoint (weights and BN buffers)."""
    buf = io.BytesIO()
    torch.save(model.float_detector.state_dict(), buf)
    return buf.tell()


def export_model(model, detector_cfg: Dict[str, Any], out_dir, onnx: bool = True,
                 onnx_opset: int = OPSET, onnx_requant: str = 'fast') -> Dict[str, Any]:
    """Export ``model`` (a calibrated QuantizedDetector) to ``out_dir``.

    Args:
        model: The QuantizedDetector, weights and ranges loaded.
        detector_cfg (dict): The float detector's mmdet config (for decoding/NMS).
        out_dir: Output directory: new, empty or a previous export (replaced only when the
            export succeeds); anything else is refused before the work.
        onnx (bool): Also write the ONNX model(s).
        onnx_opset (int): 21 (default): 4-bit weights stored as INT4 / UINT4; 17: 8-bit containers,
            for runtimes without INT4.
        onnx_requant (str): ``'fast'`` (default): onnxruntime's QLinearConv / QLinearAdd kernels;
            ``'exact'``: the integer engine's fixed-point arithmetic in integer ONNX ops (the
            engine's integers at every bit width; slower).

    Returns:
        dict: The report (also written as ``report.json`` and ``report.md``).
    """
    out_dir = check_out_dir(out_dir)
    if not bool(model.calibrated):
        raise NotCalibratedError('the model was never calibrated: export a checkpoint written after FQN '
                                 'calibration / fine-tuning (or by tools/ptq.py)')
    model.eval()
    with torch.no_grad():
        graphs = build_graphs(model)
    meta: Dict[str, Any] = dict(detector=_plain(detector_cfg), two_stage='roi' in graphs)
    if 'roi' in graphs:
        meta['roi_align'] = dict(roi_meta(model.detector.roi_head.bbox_roi_extractor), weight_bits=WEIGHT_BITS)
    tmp = staging_dir(out_dir)
    try:
        int_bytes = save_int_model(tmp / INT_FILE, graphs, meta)
        files = {INT_FILE: int_bytes}
        if onnx:
            import onnx as onnx_lib
            onnx_lib.save(to_onnx(graphs['features'], 'fqn_det_features', onnx_opset, onnx_requant),
                          str(tmp / ONNX_FILE))
            files[ONNX_FILE] = (tmp / ONNX_FILE).stat().st_size
            if 'roi' in graphs:
                onnx_lib.save(to_onnx(graphs['roi'], 'fqn_det_roi_head', onnx_opset, onnx_requant),
                              str(tmp / ROI_ONNX_FILE))
                files[ROI_ONNX_FILE] = (tmp / ROI_ONNX_FILE).stat().st_size
        report = make_report(graphs, files, fp32_checkpoint_bytes(model), meta)
        report.update(engine_report(graphs))
        if onnx:
            report['onnx_opset'] = onnx_opset
            report['onnx_requant'] = onnx_requant
        (tmp / 'report.json').write_text(json.dumps(report, indent=1))
        (tmp / 'report.md').write_text(report_markdown(report))
        install_export(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def make_report(graphs: Dict[str, IntGraph], files: Dict[str, int], fp32_bytes: int, meta: dict) -> dict:
    layers = [dict(stage=stage, name=name, op=op, w_bits=wb, a_bits=ab)
              for stage, g in graphs.items() for name, op, wb, ab in g.layer_bits()]
    non_int = [f'{stage}: {x}' for stage, g in graphs.items() for x in g.non_integer_ops()]
    notes = ['box decoding and NMS run in mmdet after the integer graph (as in FQN)']
    if meta.get('two_stage'):
        notes.append('RoIAlign: integer features and fixed-point accumulation; sample positions and bilinear '
                     f'weights come from the float proposal boxes (weights rounded to 2^-{WEIGHT_BITS})')
    return dict(written_by=EXPORT_MARK, layers=len(layers), per_layer=layers, files=files,
                fp32_checkpoint_bytes=fp32_bytes,
                int_to_fp32_ratio=files['model.fqnint'] / fp32_bytes, non_integer_ops=non_int, notes=notes,
                nodes={stage: len(g.nodes) for stage, g in graphs.items()})


def engine_report(graphs: Dict[str, IntGraph]) -> dict:
    """Which layers the integer engine runs in float32 (exact: accumulator bound < 2^24) or float64."""
    from .engine import kernel_dtype
    f64 = [f'{stage}: {n.name}' for stage, g in graphs.items() for n in g.nodes
           if n.op in ('conv', 'linear') and kernel_dtype(n) == 'float64']
    return dict(engine_float64_layers=f64)


def report_markdown(r: dict) -> str:
    lines = ['# fqn_det integer export', '',
             f"- weighted layers: {r['layers']}",
             f"- FP32 checkpoint: {r['fp32_checkpoint_bytes'] / 1e6:.3f} MB; packed integer file: "
             f"{r['files']['model.fqnint'] / 1e6:.3f} MB ({r['int_to_fp32_ratio']:.3f}x)"]
    lines += [f'- {k}: {v / 1e6:.3f} MB' for k, v in r['files'].items() if k != 'model.fqnint']
    lines += ['- non-integer ops between input quantization and head outputs: '
              + (', '.join(r['non_integer_ops']) if r['non_integer_ops'] else 'none')]
    if 'engine_float64_layers' in r:
        f64 = r['engine_float64_layers']
        lines += ['- integer engine: every convolution in float32 (accumulator bounds < 2^24, exact)' if not f64 else
                  f'- integer engine: float64 for {len(f64)} layer(s) whose accumulator bound is >= 2^24: '
                  + ', '.join(f64)]
    if 'onnx_opset' in r:
        lines += [f"- ONNX opset {r['onnx_opset']}" + (' (4-bit weights stored as INT4 / UINT4)'
                                                      if r['onnx_opset'] >= 21 else ' (8-bit weight containers)')]
    if 'onnx_requant' in r:
        lines += ['- ONNX requantization: ' + ('the integer engine\'s fixed point in integer ops (its integers at '
                                                'every bit width)' if r['onnx_requant'] == 'exact' else
                                                "onnxruntime's QLinearConv / QLinearAdd kernels")]
    lines += [f'- note: {n}' for n in r['notes']]
    lines += ['', '| stage | layer | op | weight bits | output bits |', '|---|---|---|---|---|']
    lines += [f"| {x['stage']} | {x['name']} | {x['op']} | {x['w_bits']} | {x['a_bits']} |" for x in r['per_layer']]
    return '\n'.join(lines) + '\n'
