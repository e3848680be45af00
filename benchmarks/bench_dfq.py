"""DFQ ablation on a trained detector: the detector counterpart of Nagel et al.'s Table.

    python tools/demo.py --fp-epochs 13          # the reference work_dirs/demo/fp32.pth and its data
    python benchmarks/bench_dfq.py --out benchmarks/results/dfq_retina_synthetic.md

Every row starts from the same FP32 checkpoint, uses no training, and is
evaluated with COCO bbox mAP on the same validation split in this one run:
FP32; per-tensor W8A8 plain (BN folding only), + equalization, + absorption,
+ bias correction (analytic, empirical); per-channel W8A8; W4A8 with and
without DFQ; and the fully data-free variants (ranges from BN statistics).
Activation ranges of the other rows are calibrated (FQN percentile, n batches).
On COCO: pass an R50 config/checkpoint and the data options (see README).

    python benchmarks/bench_dfq.py --mode imagenet-mobilenetv2 --out benchmarks/results/dfq_mobilenetv2_imagenet.md

runs DFQ's own experiment instead: real ImageNet MobileNetV2 weights, logit SQNR
and top-1 agreement with FP32 on real photos at each weight bit width
(``benchmarks/dfq_imagenet.py``).
"""
import argparse
import copy
import tempfile
import time
from pathlib import Path


import dfq_imagenet
from common import write_results

# name, w_bits, a_bits, per_channel, equalization, absorption, bias_correction, ranges
VARIANTS = [
    ('per-tensor W8A8, BN folding only', 8, 8, False, False, False, 'none', 'calibrated'),
    ('+ equalization', 8, 8, False, True, False, 'none', 'calibrated'),
    ('+ equalization + absorption', 8, 8, False, True, True, 'none', 'calibrated'),
    ('+ eq. + abs. + bias corr. (analytic)', 8, 8, False, True, True, 'analytic', 'calibrated'),
    ('+ eq. + abs. + bias corr. (empirical)', 8, 8, False, True, True, 'empirical', 'calibrated'),
    ('per-channel W8A8', 8, 8, True, False, False, 'none', 'calibrated'),
    ('per-tensor W4A8', 4, 8, False, False, False, 'none', 'calibrated'),
    ('per-tensor W4A8 + DFQ (eq. + abs. + analytic)', 4, 8, False, True, True, 'analytic', 'calibrated'),
    ('per-channel W4A8', 4, 8, True, False, False, 'none', 'calibrated'),
    ('per-channel W4A8 + DFQ (eq. + abs. + analytic)', 4, 8, True, True, True, 'analytic', 'calibrated'),
    ('data-free: per-tensor W8A8, BN folding only', 8, 8, False, False, False, 'none', 'data-free'),
    ('data-free: per-tensor W8A8 + DFQ (eq. + abs. + analytic)', 8, 8, False, True, True, 'analytic',
     'data-free'),
]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--mode', choices=('detector', 'imagenet-mobilenetv2'), default='detector',
                   help='a trained detector (default) or the ImageNet MobileNetV2 classifier')
    p.add_argument('--config', default='configs/fqn/retinanet_r18-tiny_fpn_fqn-w4a4_2e_synthetic.py',
                   help='quantized (QuantizedDetector) config')
    p.add_argument('--fp-config', default='configs/fqn/retinanet_r18-tiny_fpn_12e_synthetic.py',
                   help='the float config of the same detector (FP32 row)')
    p.add_argument('--checkpoint', default='work_dirs/demo/fp32.pth', help='trained FP32 mmdet checkpoint')
    p.add_argument('--data', default='work_dirs/demo/data',
                   help='generated dataset (synthetic configs); use --cfg-options for other data')
    p.add_argument('--img-size', type=int, default=128)
    p.add_argument('--num-batches', type=int, default=20, help='calibration / empirical-correction batches')
    p.add_argument('--gamma', type=float, default=None,
                   help='calibration percentile for every quantizer (default: the config\'s)')
    p.add_argument('--unbalance', type=float, default=None, metavar='SPREAD',
                   help='first apply the function-preserving channel rescaling of fqn_det.dfq.imbalance '
                        '(s in [1/SPREAD, SPREAD]): the MobileNet-like case DFQ was made for')
    p.add_argument('--only', nargs='*', type=int, help='indices of VARIANTS to run (default: all)')
    p.add_argument('--out', help='write the results markdown here')
    dfq_imagenet.add_args(p)
    from fqn_det.utils.cli import add_common_args
    add_common_args(p)
    return p.parse_args()


def load_cfg(path: str, args):
    from mmengine.config import Config

    from fqn_det.datasets import synthetic_data_options
    from fqn_det.utils.cli import check_option_keys
    cfg = Config.fromfile(path)
    if args.data and Path(args.data).is_dir():
        cfg.merge_from_dict(synthetic_data_options(Path(args.data).resolve(), args.img_size, num_workers=0))
    if args.cfg_options:
        check_option_keys(cfg, args.cfg_options)
        cfg.merge_from_dict(args.cfg_options)
    cfg.load_from = None
    cfg.launcher = 'none'
    return cfg


def main():
    args = parse_args()
    if args.mode == 'imagenet-mobilenetv2':
        dfq_imagenet.run(args)
        return
    if not Path(args.checkpoint).is_file():
        raise SystemExit(f'error: FP32 checkpoint not found: {args.checkpoint} (run `make demo` first, or '
                         'pass --checkpoint)')
    from mmdet.registry import MODELS
    from mmengine.runner import Runner, load_checkpoint

    from fqn_det.dfq.ptq import batch_runner, post_training_quantize
    from fqn_det.utils.cli import build_runner
    from fqn_det.compat.dataloader_workers import releasing_workers

    work = Path(tempfile.mkdtemp(prefix='bench_dfq_'))
    source_ckpt = args.checkpoint
    if args.unbalance:
        import torch

        from fqn_det.dfq.imbalance import unbalance_channels
        from fqn_det import compat
        from fqn_det.utils.checkpoint import load_checkpoint_file
        compat.install()
        state = load_checkpoint_file(args.checkpoint, 'cpu')
        unbalance_channels(state['state_dict'], args.unbalance)
        args.checkpoint = str(work / 'unbalanced_fp32.pth')
        torch.save(state, args.checkpoint)
    fp_cfg = load_cfg(args.fp_config, args)
    fp_cfg.load_from = args.checkpoint
    fp_cfg.work_dir = str(work / 'fp32')
    t = time.time()
    with releasing_workers(build_runner(fp_cfg)) as fp_runner:
        rows = [('FP32', '32/32', '-', '-', fp_runner.test(), time.time() - t)]
    print(f"FP32: mAP {rows[0][4]['coco/bbox_mAP']:.3f}")

    cfg = load_cfg(args.config, args)
    cfg.work_dir = str(work / 'quant')
    runner = build_runner(cfg)  # one runner; each variant's model is swapped in
    loader = Runner.build_dataloader(cfg.train_dataloader, seed=0)
    chosen = [VARIANTS[i] for i in args.only] if args.only else VARIANTS
    for name, wb, ab, per_ch, eq, absorb, bc, ranges in chosen:
        qc = copy.deepcopy(dict(cfg.model.quant_cfg))
        qc['weight'] = dict(qc.get('weight', {}), bits=wb, per_channel=per_ch)
        qc['act'] = dict(qc.get('act', {}), bits=ab)
        qc['dfq_init'] = False
        model = MODELS.build(dict(cfg.model, quant_cfg=qc))
        load_checkpoint(model, args.checkpoint, map_location='cpu', logger='silent')
        model.eval()

        t = time.time()
        post_training_quantize(model, equalization=eq, absorption=absorb, bias_correction=bc, ranges=ranges,
                               run_batches=batch_runner(model, loader, args.num_batches, seed=0),
                               gamma=args.gamma)
        ptq_s = time.time() - t
        runner.model = model
        metrics = runner.test()
        weights = 'per-channel' if per_ch else 'per-tensor'
        rows.append((name, f'{wb}/{ab}', weights, ranges, metrics, ptq_s))
        print(f"{name}: mAP {metrics['coco/bbox_mAP']:.3f} (PTQ {ptq_s:.1f}s)")

    fp_map = rows[0][4]['coco/bbox_mAP']
    lines = ['| variant | W/A bits | weights | act. ranges | bbox mAP | mAP@0.5 | Δ mAP vs FP32 | PTQ time |',
             '|---|---|---|---|---|---|---|---|']
    for name, bits, weights, ranges, m, secs in rows:
        lines.append(f"| {name} | {bits} | {weights} | {ranges} | {m['coco/bbox_mAP']:.3f} | "
                     f"{m['coco/bbox_mAP_50']:.3f} | {m['coco/bbox_mAP'] - fp_map:+.3f} | {secs:.1f}s |")
    table = '\n'.join(lines)
    print('\n' + table)
    if args.out:
        gamma = args.gamma if args.gamma is not None else cfg.model.quant_cfg.calib.gamma
        settings = [f'config: `{args.config}`, FP32 checkpoint `{source_ckpt}`',
                    f'data: `{args.data}` at {args.img_size}px; calibration: {args.num_batches} training batches, '
                    f'γ={gamma}']
        if args.unbalance:
            settings.append(f'the checkpoint was first re-parameterized with channel scales in '
                            f'[1/{args.unbalance:g}, {args.unbalance:g}] (same float function, MobileNet-like '
                            'imbalance)')
        write_results(args.out, 'DFQ ablation (post-training, no training)', settings, table)


if __name__ == '__main__':
    main()
