"""One-command demo: generated data -> FP32 RetinaNet -> two W4A4 recipes -> COCO mAP table.

    make demo            # or: python tools/demo.py [--work-dir work_dirs/demo]
    python tools/demo.py --recipes paper   # only the FQN paper's recipe

From one FP32 model, the demo fine-tunes two W4A4 recipes (calibration + QAT),
exports each as a packed integer model and ONNX, and evaluates each on fake
quantization, the integer engine and ONNX Runtime:

- ``paper``: the FQN paper's settings (per-channel asymmetric weights, every
  activation range from percentile calibration + EMA);
- ``recommended``: symmetric per-channel weights, the classification outputs
  ranged from the score threshold up, one range per head-output channel (not in
  the paper; docs/quant_config.md).

Every step is cached in the work dir (dataset, FP32 checkpoint), so a second
run (or one resumed after an interruption) skips what is already done;
``make clean-demo`` starts over.
"""
import argparse
import hashlib
import json
import shutil
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: mmengine's random seed of the reference run (drawn by mmengine in the first clean demo, then
#: fixed). With ``--fp-epochs 13`` (``REFERENCE_FP_EPOCHS``) it trains the FP32 checkpoint every benchmark
#: table was measured on (mAP 0.514); the demo's default is shorter, to fit its time budget.
REFERENCE_SEED = 801628347
REFERENCE_FP_EPOCHS = 13
#: FP32 epochs of the demo: about 11 minutes on 2 cores, so a clean run takes under 20 minutes
FP_EPOCHS = 6
FP32_CONFIG = 'configs/fqn/retinanet_r18-tiny_fpn_12e_synthetic.py'
#: recipe -> (table label, config, what it is)
RECIPES = {
    'paper': ('FQN W4A4 (paper)', 'configs/fqn/retinanet_r18-tiny_fpn_fqn-w4a4_2e_synthetic.py',
              "the FQN paper's settings: per-channel asymmetric weights, percentile calibration (n=20, "
              'γ=0.999) then EMA ranges for every activation'),
    'recommended': ('Recommended W4A4', 'configs/fqn/retinanet_r18-tiny_fpn_fqn-w4a4-sym-floor-pc_2e_synthetic.py',
                    'symmetric per-channel weights, classification outputs ranged from the score threshold '
                    'up (γ=1 there), one range per head-output channel (not in the FQN paper)'),
}
#: default training images per QAT epoch
QAT_IMAGES = 1000
BACKENDS = (('fake-quant', None), ('integer engine', 'model.fqnint'), ('ONNX Runtime', 'model.onnx'))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--work-dir', default='work_dirs/demo')
    p.add_argument('--num-train', type=int, default=3000)
    p.add_argument('--num-val', type=int, default=200)
    p.add_argument('--img-size', type=int, default=128)
    p.add_argument('--fp-epochs', type=int, default=FP_EPOCHS,
                   help=f'FP32 training epochs (default {FP_EPOCHS}; {REFERENCE_FP_EPOCHS} trains the benchmark '
                        'tables\' reference checkpoint)')
    p.add_argument('--qat-epochs', type=int, default=1)
    p.add_argument('--qat-images', type=int, default=None,
                   help='training images of each QAT epoch, the first N of the training set (default: 1000, or '
                        'all when fewer: 125 iterations, so both recipes fine-tune in about 3 minutes on 2 cores)')
    p.add_argument('--recipes', nargs='+', choices=list(RECIPES), default=list(RECIPES),
                   help='W4A4 recipes to fine-tune from the FP32 model (default: both)')
    p.add_argument('--seed', type=int, default=REFERENCE_SEED,
                   help='random seed of every run (mmengine randomness.seed); the default is the reference '
                        'run\'s, whose FP32 checkpoint the benchmark tables use')
    args = p.parse_args()
    if not 0 <= args.seed < 2 ** 32:
        p.error(f'--seed must be in [0, 2**32), got {args.seed}')
    if args.qat_images is None:
        args.qat_images = min(QAT_IMAGES, args.num_train)
    if not 0 < args.qat_images <= args.num_train:
        p.error(f'--qat-images must be in [1, --num-train={args.num_train}], got {args.qat_images}')
    if args.qat_epochs < 1 or args.fp_epochs < 1:
        p.error('--qat-epochs and --fp-epochs must be at least 1')
    args.recipes = list(dict.fromkeys(args.recipes))  # each once, in the order given
    return args


def run(config: str, work_dir: Path, options: dict, train: bool, checkpoint=None, desc: str = 'train',
        resume: bool = False) -> dict:
    from mmengine.config import Config

    from fqn_det.utils.cli import build_runner, is_exported_model, use_exported_model
    from fqn_det.compat.dataloader_workers import releasing_workers
    cfg = Config.fromfile(str(ROOT / config))
    cfg.merge_from_dict(options)
    cfg.work_dir = str(work_dir)
    # channels-last convolutions: ~12 % faster CPU training steps, same weights
    cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [dict(type='ChannelsLastHook')]
    if train:
        cfg.custom_hooks.append(dict(type='FQNProgressBarHook', desc=desc))
        cfg.default_hooks.logger.interval = 100
    if resume:
        cfg.resume = True
    if checkpoint is not None and is_exported_model(checkpoint):
        use_exported_model(cfg, checkpoint)
    elif checkpoint is not None:
        cfg.load_from = str(checkpoint)
    with releasing_workers(build_runner(cfg)) as runner:
        if train:
            runner.train()
            return {}
        return coco_metrics(runner.test())


COCO_KEYS = ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75')


def coco_metrics(metrics: dict) -> dict:
    """mmdet's CocoMetric returns no keys when a model detects nothing: that is mAP 0."""
    return {**{k: 0.0 for k in COCO_KEYS}, **metrics}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def cached_fp32_metrics(wd: Path, fp_ckpt: Path, data: Path, options: dict) -> dict:
    """COCO metrics of the FP32 checkpoint, evaluated once per checkpoint and validation set.

    The metrics are stored beside the evaluation's work dir with the SHA-256 of
    the checkpoint and of the validation annotations; a rerun with the same
    ones (the cached demo) reuses them, anything else evaluates again.
    """
    from fqn_det.utils.atomic import atomic_write_bytes
    cache = wd / 'eval_fp32' / 'metrics.json'
    key = {'checkpoint': _sha256(fp_ckpt), 'val': _sha256(data / 'annotations' / 'instances_val.json'),
           # what runner.test() reads (not the seed, the training data or the worker count)
           'options': {k: v for k, v in sorted(options.items())
                       if k.startswith('test_') and not k.endswith('num_workers')}}
    try:
        stored = json.loads(cache.read_text())
        if stored.get('key') == json.loads(json.dumps(key)):
            print('  FP32: metrics of this checkpoint on this validation set, cached')
            return coco_metrics(stored['metrics'])
    except (OSError, ValueError, AttributeError):
        pass  # none, or unreadable: evaluate
    metrics = run(FP32_CONFIG, wd / 'eval_fp32', options, False, fp_ckpt)
    text = json.dumps({'key': key, 'metrics': {k: float(v) for k, v in metrics.items()
                                               if isinstance(v, (int, float))}}, indent=1)
    atomic_write_bytes(cache, lambda f: f.write(text.encode()))
    return metrics


def export(config: str, checkpoint: Path, options: dict, out: Path) -> dict:
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
    return report


MIN_FREE_GB = 2.0  # dataset ~15 MB, checkpoints/exports ~300 MB, with headroom
HIST_LAYERS = ('input', 'backbone.conv1.out_quant.0', 'backbone.layer2.0.add.out_quant.0',
               'neck.fpn_convs.0.out_quant.0', 'bbox_head.retina_cls.out_quant.0', 'bbox_head.retina_reg.out_quant.0')


def check_disk(wd: Path) -> None:
    free = shutil.disk_usage(wd).free / 2 ** 30
    if free < MIN_FREE_GB:
        raise SystemExit(f'error: only {free:.1f} GB free under {wd}; the demo needs about {MIN_FREE_GB:.0f} GB. '
                         'Free some space (`make clean-demo` removes earlier demo outputs) and run it again.')


def check_cached(fp_ckpt: Path) -> None:
    """A cached FP32 checkpoint must load; otherwise say how to start over."""
    from fqn_det import compat
    from fqn_det.utils.checkpoint import CheckpointError, load_checkpoint_file
    compat.install()
    try:
        ckpt = load_checkpoint_file(fp_ckpt, 'cpu')
        if 'state_dict' not in ckpt:
            raise CheckpointError(f'{fp_ckpt} has no state_dict')
    except CheckpointError as e:
        raise SystemExit(f'error: the cached FP32 checkpoint is broken: {e}\n'
                         f'Delete it (rm {fp_ckpt}) to retrain it, or run `make clean-demo` to start over.')


def activation_samples(config: str, checkpoint: Path, options: dict, batches: int = 2,
                       max_values: int = 200_000) -> dict:
    """Pre-quantization values of a few representative activation quantizers on validation images,
    with each quantizer's representable range."""
    import numpy as np
    import torch
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.runner import Runner, load_checkpoint

    from fqn_det.nn.integer_eval import float_arithmetic
    from fqn_det.quant import ActQuantizer
    cfg = Config.fromfile(str(ROOT / config))
    cfg.merge_from_dict(options)
    model = MODELS.build(cfg.model)
    load_checkpoint(model, str(checkpoint), map_location='cpu', logger='silent')
    model.eval()
    quants = {n: m for n, m in model.detector.named_modules() if isinstance(m, ActQuantizer)}
    wanted = {}
    for key in HIST_LAYERS:
        name = next((n for n in quants if key in n), None)
        if name is not None:
            wanted[name] = quants[name]
    # per-channel ranges (head outputs): the channel with the widest range, on its own range
    channel = {n: int((q.max_val - q.min_val).argmax()) for n, q in wanted.items() if q.per_channel}
    seen = {n: [] for n in wanted}

    def record(n, x):
        seen[n].append((x.select(1, channel[n]) if n in channel else x).detach().flatten())

    hooks = [q.register_forward_pre_hook(lambda mod, a, n=n: record(n, a[0])) for n, q in wanted.items()]
    loader = Runner.build_dataloader(cfg.val_dataloader)
    try:
        # the float arithmetic of training: it calls the activation quantizers, which the hooks watch
        with torch.no_grad(), float_arithmetic():
            for i, data in enumerate(loader):
                if i == batches:
                    break
                model(**model.data_preprocessor(data, False), mode='tensor')
    finally:
        for h in hooks:
            h.remove()
    g = torch.Generator().manual_seed(0)
    out = {}
    for n, q in wanted.items():
        x = torch.cat(seen[n])
        if x.numel() > max_values:
            x = x[torch.randperm(x.numel(), generator=g)[:max_values]]
        # the representable range (zero is always on the grid, so it may be wider than min/max)
        s, z = float(q.scale.reshape(-1)[channel.get(n, 0)]), int(q.zero_point.reshape(-1)[channel.get(n, 0)])
        name = f'{n} [channel {channel[n]} of {q.scale.numel()}]' if n in channel else n
        out[name] = (x.numpy().astype(np.float64), (q.scheme.quant_min - z) * s, (q.scheme.quant_max - z) * s,
                     q.floor)
    return out


def write_results(wd: Path, rows, args, timings: dict, reports: dict) -> Path:
    """results.md: the mAP table, plots, timings and the machine."""
    from fqn_det.utils.machine import describe
    lines = ['# fqn_det demo results', '',
             f'Reference task: generated COCO-format data, {args.num_train} training / {args.num_val} validation '
             f'images at {args.img_size}px, 5 shape classes; small RetinaNet (narrow ResNet-18 + FPN). '
             f'Each W4A4 recipe: calibration on n=20 batches, then {args.qat_epochs} epoch(s) QAT on the first '
             f'{args.qat_images} training images from the same FP32 checkpoint ({args.fp_epochs} epochs unless '
             f'cached). Random seed {args.seed} (`--seed`; a cached FP32 checkpoint keeps the seed it was trained '
             'with).', '']
    lines += [f'- {RECIPES[k][0]} (`{RECIPES[k][1]}`): {RECIPES[k][2]}.' for k in args.recipes]
    lines += ['', '| model | bbox mAP | mAP@0.5 | mAP@0.75 | Δ vs FP32 |', '|---|---|---|---|---|']
    fp = rows[0][1]['coco/bbox_mAP']
    for name, m in rows:
        lines.append(f"| {name} | {m['coco/bbox_mAP']:.3f} | {m['coco/bbox_mAP_50']:.3f} | "
                     f"{m['coco/bbox_mAP_75']:.3f} | {m['coco/bbox_mAP'] - fp:+.3f} |")
    lines.append('')
    for k, report in reports.items():
        lines.append(f"{RECIPES[k][0]} integer model: {report['layers']} integer layers; packed file "
                     f"{report['int_to_fp32_ratio']:.3f}x the FP32 checkpoint; non-integer ops between input "
                     f"quantization and head outputs: {report['non_integer_ops'] or 'none'}.")
    lines += ['', '![mAP per variant](plots/map_per_variant.png)', '',
              'Activation histograms (values before quantization on validation images; dashed: the '
              'calibrated and fine-tuned clip range; dotted: a score-threshold floor; a head output with per-channel '
              'ranges shows its widest channel):', '']
    lines += [f'![{RECIPES[k][0]} activation histograms](plots/activation_histograms_{k}.png)' for k in args.recipes]
    lines += ['', '| step | wall time |', '|---|---|']
    lines += [f'| {k} | {v:.0f}s |' for k, v in timings.items()]
    lines += ['', f'Machine: {describe()}.', '']
    out = wd / 'results.md'
    from fqn_det.utils.atomic import atomic_write_bytes
    text = '\n'.join(lines)
    atomic_write_bytes(out, lambda f: f.write(text.encode()))
    return out


def main():
    args = parse_args()
    wd = (ROOT / args.work_dir).resolve()
    wd.mkdir(parents=True, exist_ok=True)
    check_disk(wd)
    t0 = time.time()
    timings = {}
    from fqn_det import compat
    from fqn_det.datasets import generate_synthetic_coco, reference_schedule_options, synthetic_data_options
    compat.install()
    print(f'[demo 1/5] dataset ({args.num_train} train / {args.num_val} val, {args.img_size}px)')
    data = wd / 'data'
    generate_synthetic_coco(data, num_train=args.num_train, num_val=args.num_val,
                            img_size=args.img_size, seed=0)
    opts = {**synthetic_data_options(data, args.img_size), 'randomness.seed': args.seed}
    timings['dataset'] = time.time() - t0

    t = time.time()
    fp_ckpt = wd / 'fp32.pth'
    if fp_ckpt.is_file():
        check_cached(fp_ckpt)
        print(f'[demo 2/5] FP32 RetinaNet: cached {fp_ckpt}')
    else:
        fp_dir = wd / 'fp32_train'
        resume = (fp_dir / 'last_checkpoint').is_file()
        print(f'[demo 2/5] FP32 RetinaNet: training {args.fp_epochs} epochs'
              + (' (resuming the interrupted run)' if resume else ''))
        if not resume:
            shutil.rmtree(fp_dir, ignore_errors=True)
        e = args.fp_epochs
        # no validation inside training (val_begin past the last epoch): step 4 evaluates the checkpoint
        run(FP32_CONFIG, fp_dir, {**opts, **reference_schedule_options(e), 'train_cfg.val_begin': e + 1},
            train=True, desc='FP32 training', resume=resume)
        tmp = fp_ckpt.with_suffix('.tmp')
        shutil.copyfile(fp_dir / f'epoch_{e}.pth', tmp)
        tmp.replace(fp_ckpt)  # atomic: a cached checkpoint is always complete
    timings['FP32 training'] = time.time() - t

    e = args.qat_epochs
    q_ckpts, reports = {}, {}
    for k in args.recipes:
        label, q_cfg, _ = RECIPES[k]
        t = time.time()
        print(f'[demo 3/5] {label}: calibration (n=20) + {e} epoch(s) QAT on {args.qat_images} images, then '
              'integer export')
        q_dir = wd / f'qat_{k}'
        shutil.rmtree(q_dir, ignore_errors=True)
        run(q_cfg, q_dir, {
            # no validation inside training (mmengine validates the last epoch whatever the interval,
            # unless val_begin is past it): step 4 evaluates the same model
            **opts, 'train_cfg.max_epochs': e, 'train_cfg.val_interval': e + 1, 'train_cfg.val_begin': e + 1,
            'param_scheduler.1.end': e, 'param_scheduler.1.milestones': [e + 1],
            'default_hooks.checkpoint.interval': e, 'train_dataloader.dataset.indices': args.qat_images},
            train=True, checkpoint=fp_ckpt, desc=f'{label} QAT')
        q_ckpts[k] = q_dir / f'epoch_{e}.pth'
        reports[k] = export(q_cfg, q_ckpts[k], opts, wd / f'exported_{k}')
        timings[f'{label}: calibration + QAT + export'] = time.time() - t

    t = time.time()
    print('[demo 4/5] COCO evaluation: FP32, and each recipe on fake-quant, integer engine, ONNX Runtime')
    rows = [('FP32', cached_fp32_metrics(wd, fp_ckpt, data, opts))]
    for k in args.recipes:
        label, q_cfg, _ = RECIPES[k]
        for backend, file in BACKENDS:
            model = q_ckpts[k] if file is None else wd / f'exported_{k}' / file
            work = wd / f"eval_{k}_{backend.split()[0].lower()}"
            rows.append((f'{label} {backend}', run(q_cfg, work, opts, False, model)))
    timings[f'evaluation ({len(rows)} models)'] = time.time() - t

    t = time.time()
    print('[demo 5/5] results and plots')
    from fqn_det.utils.plots import activation_histograms, map_bars
    map_bars([(n, m['coco/bbox_mAP']) for n, m in rows], wd / 'plots' / 'map_per_variant.png')
    for k in args.recipes:
        activation_histograms(activation_samples(RECIPES[k][1], q_ckpts[k], opts),
                              wd / 'plots' / f'activation_histograms_{k}.png')
    timings['plots'] = time.time() - t
    timings['total'] = time.time() - t0
    results = write_results(wd, rows, args, timings, reports)
    print('\n| model | bbox mAP | mAP@0.5 | mAP@0.75 |\n|---|---|---|---|')
    for name, m in rows:
        print(f"| {name} | {m['coco/bbox_mAP']:.3f} | {m['coco/bbox_mAP_50']:.3f} | "
              f"{m['coco/bbox_mAP_75']:.3f} |")
    print(f'\ndemo finished in {timings["total"]:.0f}s; results: {results}; plots: {wd / "plots"}')


if __name__ == '__main__':
    main()
