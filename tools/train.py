"""Train (FQN quantization-aware fine-tuning of) a detector: mmdet's train.py + fqn_det.

    python tools/train.py configs/fqn/retinanet_r50_fpn_fqn-w4a4_3e_coco.py \
        --cfg-options model.quant_cfg.weight.bits=4 train_dataloader.dataset.data_root=data/coco/
"""
import argparse
from pathlib import Path


from fqn_det.utils.cli import add_common_args, build_runner, load_config


def parse_args():
    parser = argparse.ArgumentParser(description='Train a (quantized) detector')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision')
    parser.add_argument('--auto-scale-lr', action='store_true', help='scale LR by batch size')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from this checkpoint, or without a path from the latest in the work dir')
    add_common_args(parser)
    return parser.parse_args()


def main():
    args = parse_args()
    cfg = load_config(args)
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise SystemExit('error: --auto-scale-lr needs auto_scale_lr.base_batch_size in the config')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        from fqn_det.utils.cli import check_resumable
        check_resumable(cfg.work_dir)
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        if not Path(args.resume).is_file():
            raise SystemExit(f'error: --resume checkpoint not found: {args.resume}')
        cfg.resume = True
        cfg.load_from = args.resume
    build_runner(cfg).train()


if __name__ == '__main__':
    main()
