"""One-command demo: generated data -> FP32 RetinaNet -> FQN W4A4 -> COCO mAP table.

    make demo            # or: python tools/demo.py [--work-dir work_dirs/demo]

Every step is cached in the work dir (dataset, FP32 checkpoint), so a second
run (or one resumed after an interruption) skips what is already done;
``make clean-demo`` starts over.
"""
import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--work-dir', default='work_dirs/demo')
    p.add_argument('--num-train', type=int, default=1000)
    p.add_argument('--num-val', type=int, default=100)
    p.add_argument('--img-size', type=int, default=128)
    p.add_argument('--fp-epochs', type=int, default=12)
    p.add_argument('--qat-epochs', type=int, default=1)
    return p.parse_args()


def run(config: str, work_dir: Path, options: dict, train: bool, checkpoint=None) -> dict:
    from mmengine.config import Config

    from fqn_det.utils.cli import build_runner, is_exported_model, use_exported_model
    cfg = Config.fromfile(str(ROOT / config))
    cfg.merge_from_dict(options)
    cfg.work_dir = str(work_dir)
    if checkpoint is not None and is_exported_model(checkpoint):
        use_exported_model(cfg, checkpoint)
    elif checkpoint is not None:
        cfg.load_from = str(checkpoint)
    runner = build_runner(cfg)
    if train:
        runner.train()
        return {}
    return runner.test()


def export(config: str, checkpoint: Path, options: dict, out: Path) -> None:
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.runner import load_checkpoint

    from fqn_det.export.exporter import export_model
    cfg = Config.fromfile(str(ROOT / config))
    cfg.merge_from_dict(options)
    model = MODELS.build(cfg.model)
    load_checkpoint(model, str(checkpoint), map_location='cpu')
    report = export_model(model, cfg.model.detector, out)
    print(f"  {report['layers']} integer layers; packed file {report['int_to_fp32_ratio']:.3f}x the FP32 "
          f"checkpoint; non-integer ops: {report['non_integer_ops'] or 'none'}")


def main():
    args = parse_args()
    wd = (ROOT / args.work_dir).resolve()
    wd.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    from fqn_det.datasets import generate_synthetic_coco, synthetic_data_options
    print(f'[demo 1/5] dataset ({args.num_train} train / {args.num_val} val, {args.img_size}px)')
    data = wd / 'data'
    generate_synthetic_coco(data, num_train=args.num_train, num_val=args.num_val,
                            img_size=args.img_size, seed=0)
    opts = synthetic_data_options(data, args.img_size)

    fp_ckpt = wd / 'fp32.pth'
    if fp_ckpt.is_file():
        print(f'[demo 2/5] FP32 RetinaNet: cached {fp_ckpt}')
    else:
        print(f'[demo 2/5] FP32 RetinaNet: training {args.fp_epochs} epochs')
        fp_dir = wd / 'fp32_train'
        shutil.rmtree(fp_dir, ignore_errors=True)
        e = args.fp_epochs
        run('configs/synthetic/retina_r18_tiny_fp32.py', fp_dir, {
            **opts, 'train_cfg.max_epochs': e, 'train_cfg.val_interval': e,
            'param_scheduler.1.end': e, 'param_scheduler.1.milestones': [max(e - 2, 1)],
            'default_hooks.checkpoint.interval': e}, train=True)
        tmp = fp_ckpt.with_suffix('.tmp')
        shutil.copyfile(fp_dir / f'epoch_{e}.pth', tmp)
        tmp.replace(fp_ckpt)  # atomic: a cached checkpoint is always complete

    print(f'[demo 3/5] FQN W4A4: calibration (n=20, gamma=0.999) + {args.qat_epochs} epoch(s) QAT')
    q_dir = wd / 'int4_train'
    shutil.rmtree(q_dir, ignore_errors=True)
    e = args.qat_epochs
    run('configs/synthetic/retina_r18_tiny_int4.py', q_dir, {
        **opts, 'train_cfg.max_epochs': e, 'train_cfg.val_interval': e + 1,
        'param_scheduler.1.end': e, 'param_scheduler.1.milestones': [e + 1],
        'default_hooks.checkpoint.interval': e}, train=True, checkpoint=fp_ckpt)

    print('[demo 4/5] integer export (packed 4-bit model + ONNX)')
    q_cfg, q_ckpt = 'configs/synthetic/retina_r18_tiny_int4.py', q_dir / f'epoch_{e}.pth'
    export(q_cfg, q_ckpt, opts, wd / 'exported')

    print('[demo 5/5] COCO evaluation')
    fp = run('configs/synthetic/retina_r18_tiny_fp32.py', wd / 'eval_fp32', opts, False, fp_ckpt)
    q = run(q_cfg, wd / 'eval_int4', opts, False, q_ckpt)
    eng = run(q_cfg, wd / 'eval_engine', opts, False, wd / 'exported' / 'model.fqnint')
    ort = run(q_cfg, wd / 'eval_onnx', opts, False, wd / 'exported' / 'model.onnx')
    rows = [('FP32', fp), ('FQN W4A4 (fake-quant)', q), ('FQN W4A4 integer engine', eng),
            ('FQN W4A4 ONNX Runtime', ort)]
    print('\n| model | bbox mAP | mAP@0.5 | mAP@0.75 |\n|---|---|---|---|')
    for name, m in rows:
        print(f"| {name} | {m['coco/bbox_mAP']:.3f} | {m['coco/bbox_mAP_50']:.3f} | "
              f"{m['coco/bbox_mAP_75']:.3f} |")
    print(f'\ndemo finished in {time.time() - t0:.0f}s; outputs in {wd}')


if __name__ == '__main__':
    main()
