"""Export a fine-tuned fqn_det checkpoint as an integer model, ONNX and a report.

    python tools/export.py configs/fqn/retinanet_r50_fpn_fqn-w4a4_3e_coco.py \
        work_dirs/retinanet_r50_fpn_fqn-w4a4_3e_coco/epoch_3.pth --out exported/retina

Writes DIR/model.fqnint (packed integer model), DIR/model.onnx (+ roi_head.onnx
for two-stage detectors), DIR/report.md and DIR/report.json, atomically.
"""
import argparse
from pathlib import Path



def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='the quantized (QuantizedDetector) config the checkpoint was trained with')
    p.add_argument('checkpoint', help='fine-tuned (calibrated) checkpoint')
    p.add_argument('--out', required=True, help='output directory')
    p.add_argument('--no-onnx', action='store_true', help='write only the integer model file')
    p.add_argument('--onnx-opset', type=int, choices=(17, 21), default=21,
                   help='21 (default): 4-bit weights stored in 4 bits (INT4/UINT4 initializers); '
                   '17: 8-bit weight containers, for ONNX runtimes without INT4')
    p.add_argument('--onnx-requant', choices=('fast', 'exact'), default='fast',
                   help="fast (default): onnxruntime's QLinearConv / QLinearAdd kernels, the integer engine's "
                   'integers up to 6-bit activations; exact: the engine\'s fixed-point requantization in integer '
                   'ONNX ops, its integers at every bit width, on slower kernels')
    from fqn_det.utils.cli import add_common_args
    add_common_args(p)
    return p.parse_args()


def main():
    args = parse_args()
    from fqn_det.utils.cli import load_config
    cfg = load_config(args)
    if not Path(args.checkpoint).is_file():
        raise SystemExit(f'error: checkpoint not found: {args.checkpoint}')
    from fqn_det.export.out_dir import check_out_dir
    check_out_dir(args.out)  # before any work: a file or a foreign directory is refused
    if cfg.model.get('type') != 'QuantizedDetector':
        raise SystemExit(f'error: {args.config} is not a quantized config (model.type is '
                         f'{cfg.model.get("type")!r}, expected QuantizedDetector)')
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.runner import load_checkpoint

    from fqn_det import compat
    from fqn_det.export.exporter import export_model
    register_all_modules()
    compat.install()
    model = MODELS.build(cfg.model)
    load_checkpoint(model, args.checkpoint, map_location='cpu')
    report = export_model(model, cfg.model.detector, args.out, onnx=not args.no_onnx,
                          onnx_opset=args.onnx_opset, onnx_requant=args.onnx_requant)
    print(Path(args.out, 'report.md').read_text())
    print(f"exported {report['layers']} layers to {args.out}")


if __name__ == '__main__':
    main()
