"""Post-training quantization with DFQ (Nagel et al., ICCV 2019): no training, data optional.

    python tools/ptq.py configs/fqn/retinanet_r50_fpn_fqn-w4a4_3e_coco.py fp32.pth --out work_dirs/ptq \
        --w-bits 8 --a-bits 8 --per-tensor --dfq --bias-correction analytic --ranges data-free

Writes DIR/ptq.pth (a checkpoint tools/test.py evaluates and tools/export.py
exports, with DIR/config.py, the config it belongs to) and DIR/ptq_report.json.
"""
import argparse
import json
from pathlib import Path



def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='a quantized (QuantizedDetector) config, '
                   'e.g. configs/fqn/retinanet_r50_fpn_fqn-w4a4_3e_coco.py')
    p.add_argument('checkpoint', help='the full-precision mmdet checkpoint')
    p.add_argument('--out', required=True, help='output directory')
    p.add_argument('--w-bits', type=int, default=8)
    p.add_argument('--a-bits', type=int, default=8)
    g = p.add_mutually_exclusive_group()
    g.add_argument('--per-tensor', action='store_true', help='per-tensor weights (default)')
    g.add_argument('--per-channel', action='store_true', help='per-channel weights')
    p.add_argument('--symmetric', action='store_true', help='symmetric weights')
    p.add_argument('--dfq', action='store_true', help='cross-layer equalization + high-bias absorption')
    p.add_argument('--bias-correction', choices=['none', 'analytic', 'empirical'], default='none')
    p.add_argument('--ranges', choices=['data-free', 'calibrated'], default='data-free',
                   help='activation ranges from BN statistics, or FQN percentile calibration')
    p.add_argument('--num-batches', type=int, default=20, help='batches for calibration / empirical correction')
    from fqn_det.utils.cli import add_common_args
    add_common_args(p)
    return p.parse_args()


def is_quantized_checkpoint(path) -> bool:
    """A QuantizedDetector checkpoint (its keys under ``detector.``, a ``calibrated`` flag)?"""
    from fqn_det.utils.checkpoint import allow_mmengine_checkpoints, load_checkpoint_file
    allow_mmengine_checkpoints()
    ckpt = load_checkpoint_file(path, 'cpu')
    sd = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else {}
    return 'calibrated' in sd or any(str(k).startswith('detector.') for k in sd)


def main():
    args = parse_args()
    from fqn_det.quant.qscheme import MAX_BITS, MIN_BITS
    for name in ('w_bits', 'a_bits'):
        v = getattr(args, name)
        if not MIN_BITS <= v <= MAX_BITS:
            raise SystemExit(f'error: --{name.replace("_", "-")} must be in [{MIN_BITS}, {MAX_BITS}], got {v}')
    if args.num_batches < 1:
        raise SystemExit(f'error: --num-batches must be >= 1, got {args.num_batches}')
    from fqn_det.utils.cli import load_config
    cfg = load_config(args)
    if cfg.model.get('type') != 'QuantizedDetector':
        raise SystemExit(f'error: {args.config} is not a quantized config (model.type must be QuantizedDetector)')
    if not Path(args.checkpoint).is_file():
        raise SystemExit(f'error: checkpoint not found: {args.checkpoint}')
    qc = dict(cfg.model.get('quant_cfg') or {})
    qc['weight'] = dict(qc.get('weight') or {}, bits=args.w_bits, per_channel=bool(args.per_channel),
                        symmetric=bool(args.symmetric))
    qc['act'] = dict(qc.get('act') or {}, bits=args.a_bits)
    qc['dfq_init'] = False
    cfg.model.quant_cfg = qc
    cfg.custom_hooks = [h for h in cfg.get('custom_hooks', []) if h.get('type') != 'FQNCalibrationHook']

    import torch
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.runner import load_checkpoint

    from fqn_det import compat
    from fqn_det.dfq.ptq import batch_runner, post_training_quantize
    from fqn_det.utils.atomic import atomic_write_bytes
    from fqn_det.utils.dataset_check import checked_build_dataloader
    register_all_modules()
    compat.install()
    if is_quantized_checkpoint(args.checkpoint):  # before its scheme or shapes are compared with the config's
        raise SystemExit(f'error: tools/ptq.py expects a full-precision checkpoint, got a quantized one: '
                         f'{args.checkpoint}')
    model = MODELS.build(cfg.model)
    load_checkpoint(model, args.checkpoint, map_location='cpu')
    model.eval()
    loader = None
    if args.ranges == 'calibrated' or args.bias_correction == 'empirical':
        loader = checked_build_dataloader(cfg.train_dataloader)  # EmptyDatasetError if empty

    report = dict(vars(args))
    report.update(post_training_quantize(
        model, equalization=args.dfq, absorption=args.dfq, bias_correction=args.bias_correction,
        ranges=args.ranges, run_batches=batch_runner(model, loader, args.num_batches) if loader is not None else None))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = dict(state_dict=model.state_dict(), meta=dict(ptq=report, quant_scheme=model.scheme_record()))
    atomic_write_bytes(out / 'ptq.pth', lambda f: torch.save(ckpt, f))
    cfg.load_from = None
    cfg.dump(str(out / 'config.py'))
    (out / 'ptq_report.json').write_text(json.dumps(report, indent=1, default=str))
    print(f'PTQ checkpoint: {out / "ptq.pth"}\nits config:     {out / "config.py"}\n'
          f'evaluate with:  python tools/test.py {out / "config.py"} {out / "ptq.pth"}')


if __name__ == '__main__':
    main()
