"""Evaluate a (quantized) detector with the config's metrics (COCO bbox mAP).

    CFG=configs/fqn/retinanet_r50_fpn_fqn-w4a4_3e_coco.py
    python tools/test.py $CFG work_dirs/retinanet_r50_fpn_fqn-w4a4_3e_coco/epoch_3.pth   # fake-quant
    python tools/test.py $CFG exported/retina/model.fqnint                               # integer engine
    python tools/test.py $CFG exported/retina/model.onnx                                 # onnxruntime
"""
import argparse
from pathlib import Path


from fqn_det.utils.cli import (add_common_args, build_runner, is_exported_model, load_config,
                               use_exported_model)


def parse_args():
    parser = argparse.ArgumentParser(description='Test (and evaluate) a (quantized) detector')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file, or an exported model: model.fqnint '
                        '(integer engine), model.onnx (onnxruntime) or the export directory')
    parser.add_argument('--out', help='dump predictions to a .pkl file for offline evaluation')
    parser.add_argument('--show-dir', help='save painted images under work_dir/timestamp/')
    add_common_args(parser)
    return parser.parse_args()


def main():
    args = parse_args()
    cfg = load_config(args)
    ckpt = Path(args.checkpoint)
    if not ckpt.exists():
        raise SystemExit(f'error: checkpoint not found: {args.checkpoint}')
    if is_exported_model(ckpt):
        use_exported_model(cfg, ckpt)  # integer engine (.fqnint / export dir) or onnxruntime (.onnx)
    elif not ckpt.is_file():
        raise SystemExit(f'error: checkpoint not found: {args.checkpoint}')
    else:
        cfg.load_from = args.checkpoint
    if args.show_dir:
        from mmdet.engine.hooks.utils import trigger_visualization_hook
        args.show, args.wait_time = False, 0
        cfg = trigger_visualization_hook(cfg, args)
    runner = build_runner(cfg)
    if args.out is not None:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise SystemExit('error: --out must end with .pkl or .pickle')
        from mmdet.evaluation import DumpDetResults
        runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))
    runner.test()


if __name__ == '__main__':
    main()
