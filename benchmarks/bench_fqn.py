"""FQN benchmark table: paper-style ablations and the IAO baseline, same FP checkpoint, same QAT budget.

    python tools/demo.py --fp-epochs 13   # the reference work_dirs/demo/fp32.pth (RetinaNet) and data
    python benchmarks/bench_fqn.py --out benchmarks/results/fqn_retina_synthetic.md
    python benchmarks/bench_fqn.py --rows fp32 fqn iao            # a subset
    python benchmarks/bench_fqn.py --detector faster --checkpoint work_dirs/demo/faster_fp32.pth \
        --train-fp 4 --fp-backbone work_dirs/demo/fp32.pth --rows      # the FP32 reference only
    python benchmarks/bench_fqn.py --detector faster --checkpoint work_dirs/demo/faster_fp32.pth \
        --cfg-options train_dataloader.dataset.indices=1500 --out benchmarks/results/fqn_faster_synthetic.md

    # MobileNetV2 (width 1) from torchvision's ImageNet weights: SSDLite, RetinaNet
    python benchmarks/bench_fqn.py --detector ssdlite --checkpoint work_dirs/mbv2/ssdlite_fp32.pth \
        --train-fp 8 --rows                                            # the FP32 reference only
    python benchmarks/bench_fqn.py --detector ssdlite --checkpoint work_dirs/mbv2/ssdlite_fp32.pth \
        --rows fp32 fp32_ft fqn recommended iao w8a8 outputs_a8 --cfg-options train_dataloader.dataset.indices=1000

``--cfg-options`` apply to every run, ``--train-fp``'s FP32 training included.

Every quantized row starts from the same FP32 checkpoint, fine-tunes for the same
number of epochs with the same schedule and seed, and is evaluated with COCO
bbox mAP on the same validation split, in this one run. Rows:

* ``fp32``: the checkpoint itself;
* ``fp32_ft``: the checkpoint fine-tuned with the QAT schedule and budget, without
  quantization. An undertrained FP32 reference also gains from the extra epoch, so
  the loss against this row is the quantization loss alone (both are reported);
* ``fqn``: FQN W4A4 with the paper's defaults (frozen folded BN, n=20, γ=0.999,
  per-channel asymmetric weights, percentile EMA);
* ``fqn_dfq``: the same, DFQ initialization (``quant_cfg.dfq_init``); ``w8a8``;
* ``iao``: Jacob et al.'s QAT at W4A4: no calibration (the first batch
  initializes min/max ranges), EMA of min/max, BN not frozen (batch
  statistics folded, running statistics updated), per-tensor weights;
* ablations of FQN, one change each: ``no_frozen_bn``; ``gamma_1`` (min/max),
  ``gamma_0.9999``, ``gamma_0.99``; ``n_1``, ``n_5``; ``per_tensor``;
  ``symmetric`` (weights);
* not in the paper, to locate the 4-bit loss: ``logits_minmax`` (γ=1 on the
  classification outputs only) and ``outputs_a8`` (head outputs at 8 bits);
* not in the paper, this project's fix for the 4-bit classification outputs
  (RetinaNet): ``score_floor``, γ=1 on them and their range floored at the
  logit of the detector's own score threshold (``floor='score_thr'``): logits
  under it are discarded before NMS whatever their value, so the 16 levels go
  to the logits that can become detections;
* not in the paper: ``outputs_pc``, one range per output channel of the head
  outputs (each anchor's box deltas dx, dy, dw, dh, each class's logits), which
  costs the integer model nothing: they are dequantized for decoding, no
  integer layer reads them; and ``floor_pc``, both fixes together (RetinaNet);
* ``recommended``: the project's recipe: symmetric per-channel weights,
  per-channel head-output ranges and, on sigmoid heads, the score floor.

The 4-bit loss of each row is ``mAP(FP32) - mAP(row)``; the table reports the
ratio of the IAO baseline's loss to FQN's (the paper reports > 3.8x). Nothing
is tuned per row. On COCO, pass the R50 configs, checkpoint and data options
(see the README).
"""
import argparse
import statistics
import tempfile
import time
from pathlib import Path


from common import write_results

Q = 'model.quant_cfg.'
NO_CALIB = object()  # marker: remove FQNCalibrationHook
ROWS = {
    'fqn': ('FQN W4A4 (paper defaults)', {}),
    'fqn_dfq': ('FQN W4A4 + DFQ initialization', {Q + 'dfq_init': True}),
    'w8a8': ('FQN W8A8', {Q + 'weight.bits': 8, Q + 'act.bits': 8}),
    'iao': ('IAO baseline W4A4 (min/max EMA from the first batch, BN not frozen, per-tensor)',
            {Q + 'ema.stat': 'minmax', Q + 'freeze_bn': False, Q + 'weight.per_channel': False,
             'custom_hooks': NO_CALIB}),
    'no_frozen_bn': ('FQN W4A4 without frozen BN', {Q + 'freeze_bn': False}),
    'gamma_1': ('FQN W4A4, γ=1.0 (min/max)', {Q + 'calib.gamma': 1.0}),
    'gamma_0.9999': ('FQN W4A4, γ=0.9999', {Q + 'calib.gamma': 0.9999}),
    'gamma_0.99': ('FQN W4A4, γ=0.99', {Q + 'calib.gamma': 0.99}),
    'n_1': ('FQN W4A4, n=1', {Q + 'calib.num_batches': 1}),
    'n_5': ('FQN W4A4, n=5', {Q + 'calib.num_batches': 5}),
    'per_tensor': ('FQN W4A4, per-tensor weights', {Q + 'weight.per_channel': False}),
    'symmetric': ('FQN W4A4, symmetric weights', {Q + 'weight.symmetric': True}),
    # Not paper ablations: they test where the 4-bit loss comes from. The classification logits'
    # top 0.1 % (the confident detections) are clipped by γ=0.999; the box deltas get 16 levels.
    'logits_minmax': ('FQN W4A4, γ=1 on the classification outputs only',
                      {Q + 'overrides': lambda det: HEAD_OUTPUTS[det]['cls'].replace('=', ':gamma=1.0')}),
    'outputs_a8': ('FQN W4A4, head outputs (classification and box) at 8 bits',
                   {Q + 'overrides': lambda det: ';'.join(
                       p.replace('=', ':a_bits=8') for p in HEAD_OUTPUTS[det].values())}),
    # This project's fix for the classification outputs (not in the paper): the same FQN run, with
    # those outputs' range from their max down to the detector's own score threshold.
    'score_floor': ('FQN W4A4 + classification outputs floored at the score threshold, γ=1 there (not in the '
                    'paper)', {Q + 'overrides': lambda det: ';'.join(
                        HEAD_OUTPUTS[det]['cls'].replace('=', f':{kv}') for kv in ('gamma=1.0', 'floor=score_thr'))}),
    # Not in the paper either: one range per output channel of the head outputs (nothing integer reads
    # them: they are dequantized for decoding), e.g. each anchor's dx, dy, dw, dh on its own 16 levels.
    'outputs_pc': ('FQN W4A4, head outputs with one range per output channel (not in the paper)',
                   {Q + 'overrides': lambda det: ';'.join(
                       p.replace('=', ':a_per_channel=True') for p in HEAD_OUTPUTS[det].values())}),
    'floor_pc': ('FQN W4A4 + score floor + per-channel head-output ranges (not in the paper)',
                 {Q + 'overrides': lambda det: ';'.join(
                     [HEAD_OUTPUTS[det]['cls'].replace('=', f':{kv}') for kv in ('gamma=1.0', 'floor=score_thr')]
                     + [p.replace('=', ':a_per_channel=True') for p in HEAD_OUTPUTS[det].values()])}),
    # The project's recommended recipe: symmetric per-channel weights, per-channel head-output ranges and,
    # on sigmoid heads with a score threshold, the score floor.
    'recommended': ('Recommended W4A4: symmetric weights, per-channel head outputs, score floor on sigmoid heads '
                    '(not in the paper)', {Q + 'weight.symmetric': True, Q + 'overrides': lambda det: ';'.join(
                        ([HEAD_OUTPUTS[det]['cls'].replace('=', f':{kv}') for kv in ('gamma=1.0', 'floor=score_thr')]
                         if det in SIGMOID else [])
                        + [p.replace('=', ':a_per_channel=True') for p in HEAD_OUTPUTS[det].values()])}),
}
# detectors with a sigmoid classification head and a test-time score threshold, and the rows that need one
SIGMOID = ('retina', 'retina_mbv2')
ONLY = {'score_floor': SIGMOID, 'floor_pc': SIGMOID}
# the head outputs that feed box decoding, scoring and NMS ('=' marks where the setting goes;
# several patterns joined by ';' in quant_cfg.overrides' string form)
HEAD_OUTPUTS = {
    'retina': {'cls': 'bbox_head.retina_cls=', 'reg': 'bbox_head.retina_reg='},
    'faster': {'cls': 'rpn_head.rpn_cls=;roi_head.bbox_head.fc_cls=',
               'reg': 'rpn_head.rpn_reg=;roi_head.bbox_head.fc_reg='},
    'retina_mbv2': {'cls': 'bbox_head.retina_cls=', 'reg': 'bbox_head.retina_reg='},
    'ssdlite': {'cls': 'bbox_head.cls_convs.*.1=', 'reg': 'bbox_head.reg_convs.*.1='},  # each level's output conv
}
FP32_FT = 'FP32 fine-tuned with the QAT schedule and budget, no quantization'
CONFIGS = {'retina': ('configs/fqn/retinanet_r18-tiny_fpn_12e_synthetic.py',
                      'configs/fqn/retinanet_r18-tiny_fpn_fqn-w4a4_2e_synthetic.py'),
           'faster': ('configs/fqn/faster-rcnn_r18-tiny_fpn_12e_synthetic.py',
                      'configs/fqn/faster-rcnn_r18-tiny_fpn_fqn-w4a4_2e_synthetic.py'),
           # MobileNetV2 (width 1) from torchvision's ImageNet weights, trained with --train-fp
           'retina_mbv2': ('configs/fqn/retinanet_mobilenetv2-imagenet_fpn_12e_synthetic.py',
                           'configs/fqn/retinanet_mobilenetv2-imagenet_fpn_fqn-w4a4_2e_synthetic.py'),
           'ssdlite': ('configs/fqn/ssdlite_mobilenetv2-imagenet_12e_synthetic.py',
                       'configs/fqn/ssdlite_mobilenetv2-imagenet_fqn-w4a4_2e_synthetic.py')}
#: the largest loss against FP32 each detector's recommended recipe should have
RECOMMENDED_TARGET = {'retina': 0.010, 'faster': 0.010, 'retina_mbv2': 0.020, 'ssdlite': 0.020}


def default_rows(detector: str) -> list:
    """Every row that applies to ``detector``."""
    return ['fp32', 'fp32_ft', *(r for r in ROWS if detector in ONLY.get(r, (detector,)))]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--detector', choices=sorted(CONFIGS), default='retina')
    p.add_argument('--fp-config', help='float config (default: the synthetic one of --detector)')
    p.add_argument('--config', help='int4 config (default: the synthetic one of --detector)')
    p.add_argument('--checkpoint', default='work_dirs/demo/fp32.pth', help='trained FP32 mmdet checkpoint')
    p.add_argument('--data', default='work_dirs/demo/data', help='generated dataset (synthetic configs)')
    p.add_argument('--img-size', type=int, default=128)
    p.add_argument('--qat-epochs', type=int, default=1, help='QAT budget, the same for every row')
    p.add_argument('--train-fp', type=int, metavar='EPOCHS',
                   help='when --checkpoint does not exist, first train the FP32 detector on --data for EPOCHS '
                        "epochs (the demo's reference schedule) and cache it there")
    p.add_argument('--fp-backbone', metavar='CKPT',
                   help='with --train-fp: initialize the backbone from this detector checkpoint (e.g. the '
                        "demo's RetinaNet, same narrow ResNet-18), as ImageNet weights would be")
    p.add_argument('--rows', nargs='*', default=None,
                   help=f'rows to run: fp32 fp32_ft {" ".join(ROWS)} (default: all that apply to --detector; '
                        f"{', '.join(f'{r} only on {chr(47).join(d)}' for r, d in ONLY.items())})")
    p.add_argument('--seeds', type=int, nargs='+', default=[0],
                   help='random seeds: every trained row runs once per seed and reports the mean and the '
                        'spread (the FP32 evaluation does not depend on the seed)')
    p.add_argument('--work-dir', default=None, help='where runs are kept (default: a temporary dir)')
    p.add_argument('--out', help='write the results markdown here')
    p.add_argument('--cfg-options', nargs='+', default=[], help='extra key=value overrides for every run')
    return p.parse_args()


def build_cfg(path: str, args, work: Path, overrides: dict, seed: int = 0):
    from mmengine.config import Config, DictAction

    from fqn_det.datasets import synthetic_data_options
    from fqn_det.utils.cli import check_option_keys
    cfg = Config.fromfile(path)
    if args.data and Path(args.data).is_dir():
        cfg.merge_from_dict(synthetic_data_options(Path(args.data).resolve(), args.img_size))
    extra = {}
    for kv in args.cfg_options:
        k, v = kv.split('=', 1)
        extra[k] = DictAction._parse_iterable(v)
    check_option_keys(cfg, extra)
    cfg.merge_from_dict(extra)
    overrides = dict(overrides)
    hooks = overrides.pop('custom_hooks', None)
    cfg.merge_from_dict(overrides)
    cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [dict(type='ChannelsLastHook')]  # same weights, faster
    if hooks is NO_CALIB:
        cfg.custom_hooks = [h for h in cfg.custom_hooks if h.type != 'FQNCalibrationHook']
    cfg.work_dir = str(work)
    cfg.launcher = 'none'
    cfg.randomness = dict(seed=seed)
    return cfg


def train_fp32(fp_path: str, args, work: Path) -> None:
    """Train the FP32 reference on ``--data`` and cache its last checkpoint at ``--checkpoint`` (atomically)."""
    import shutil

    from fqn_det.datasets import reference_schedule_options
    from fqn_det.utils.cli import build_runner
    from fqn_det.compat.dataloader_workers import releasing_workers
    print(f'[fp32] training {fp_path} for {args.train_fp} epochs -> {args.checkpoint}', flush=True)
    cfg = build_cfg(fp_path, args, work, reference_schedule_options(args.train_fp))
    if args.fp_backbone:
        if not Path(args.fp_backbone).is_file():
            raise SystemExit(f'error: --fp-backbone checkpoint not found: {args.fp_backbone}')
        cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=str(args.fp_backbone), prefix='backbone.')
    cfg.custom_hooks.append(dict(type='FQNProgressBarHook', desc='FP32 training'))
    with releasing_workers(build_runner(cfg)) as runner:
        runner.train()
    out = Path(args.checkpoint)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + '.tmp')
    shutil.copyfile(work / f'epoch_{args.train_fp}.pth', tmp)
    tmp.replace(out)


def run_row(row: str, args, fp_path: str, q_path: str, work: Path, budget: dict, seed: int):
    """Train (unless ``row`` is ``fp32``) and evaluate one row with one seed: ``(name, metrics)``."""
    from fqn_det.utils.cli import build_runner
    from fqn_det.compat.dataloader_workers import releasing_workers
    if row == 'fp32':
        cfg = build_cfg(fp_path, args, work, {}, seed)
        cfg.load_from = args.checkpoint
        with releasing_workers(build_runner(cfg)) as runner:
            return 'FP32', runner.test()
    if row == 'fp32_ft':
        # the QAT schedule and budget without quantization: what the extra training alone is worth
        cfg = build_cfg(q_path, args, work, budget, seed)
        cfg.model = cfg.model.detector
        cfg.custom_hooks = [h for h in cfg.custom_hooks if not h.type.startswith('FQN')
                            or h.type == 'FQNNaNGuardHook']
        name = FP32_FT
    else:
        name, overrides = ROWS[row]
        overrides = {k: v(args.detector) if callable(v) else v for k, v in overrides.items()}
        cfg = build_cfg(q_path, args, work, {**budget, **overrides}, seed)
    cfg.load_from = args.checkpoint
    with releasing_workers(build_runner(cfg)) as runner:
        runner.train()
        return name, runner.test()


def main():
    args = parse_args()
    if args.train_fp is not None and args.train_fp < 1:
        raise SystemExit(f'error: --train-fp must be at least 1 epoch, got {args.train_fp}')
    if args.fp_backbone and not args.train_fp:
        raise SystemExit('error: --fp-backbone only applies when the FP32 checkpoint is trained (--train-fp)')
    if args.rows is None:
        args.rows = default_rows(args.detector)
    unknown = [r for r in args.rows if r not in ('fp32', 'fp32_ft') and r not in ROWS]
    if unknown:
        raise SystemExit(f'error: unknown rows {unknown}; choose from fp32 fp32_ft {" ".join(ROWS)}')
    other = [r for r in args.rows if args.detector not in ONLY.get(r, (args.detector,))]
    if other:
        raise SystemExit(f'error: rows {other} do not apply to --detector {args.detector} (they need a sigmoid '
                         'classification head with a test-time score threshold, as RetinaNet has)')
    if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        raise SystemExit(f'error: --seeds must be distinct non-negative integers, got {args.seeds}')
    fp_path, q_path = CONFIGS[args.detector]
    fp_path, q_path = args.fp_config or fp_path, args.config or q_path
    root = Path(args.work_dir or tempfile.mkdtemp(prefix='bench_fqn_'))
    if not Path(args.checkpoint).is_file():
        if not args.train_fp:
            raise SystemExit(f'error: FP32 checkpoint not found: {args.checkpoint} (run `make demo` first, pass '
                             '--checkpoint, or --train-fp EPOCHS to train it)')
        train_fp32(fp_path, args, root / 'fp32_train')
    e = args.qat_epochs
    budget = {'train_cfg.max_epochs': e, 'train_cfg.val_interval': e + 1, 'param_scheduler.1.end': e,
              'param_scheduler.1.milestones': [e + 1] if e == 1 else [e - 1],
              'default_hooks.checkpoint.interval': e}
    results, text = [], ''
    for row in args.rows:
        t = time.time()
        per_seed = []
        for seed in ([args.seeds[0]] if row == 'fp32' else args.seeds):
            name, metrics = run_row(row, args, fp_path, q_path, root / (row if len(args.seeds) == 1 else
                                                                         f'{row}_seed{seed}'), budget, seed)
            metrics = {'coco/bbox_mAP': 0.0, 'coco/bbox_mAP_50': 0.0, **metrics}  # {} when nothing is detected
            per_seed.append(metrics)
            print(f"[{row}, seed {seed}] {name}: bbox mAP {metrics['coco/bbox_mAP']:.3f} "
                  f"({time.time() - t:.0f}s)", flush=True)
        results.append((row, name, per_seed if len(per_seed) > 1 else per_seed[0], time.time() - t))
        # after every row, so an interrupted run keeps what it measured
        text = render(results, len(args.rows), args.detector)
        if args.out:
            from fqn_det.utils.plots import map_bars
            plot = Path(args.out).with_suffix('.png')
            map_bars([(r, _mean(m)['coco/bbox_mAP']) for r, _, m, _ in results], plot,
                     title=f'FQN benchmark ({args.detector}): bbox mAP per row'
                     + (f' (mean of {len(args.seeds)} seeds)' if len(args.seeds) > 1 else ''))
            seeds = ' '.join(map(str, args.seeds))
            write_results(args.out, f'FQN benchmark: {args.detector}, QAT budget {e} epoch(s)',
                          [f'FP32 checkpoint `{args.checkpoint}`; configs `{fp_path}`, `{q_path}`',
                           f'data `{args.data}` at {args.img_size}px; '
                           + (f'seed {seeds} for every run' if len(args.seeds) == 1 else
                              f'seeds {seeds}: every trained row once per seed (mean ± sample std)')],
                          text + f'\n\n![bbox mAP per row]({plot.name})')
    print('\n' + text)


def _mean(metrics) -> dict:
    """A row's metrics: the dict of its one seed, or the mean over its seeds (a list of dicts)."""
    if isinstance(metrics, dict):
        return metrics
    return {k: statistics.fmean(m.get(k, 0.0) for m in metrics) for k in metrics[0]}


def _spread(metrics, key: str = 'coco/bbox_mAP') -> str:
    """' ± std' (sample std over seeds) for a multi-seed row, '' for one seed."""
    return '' if isinstance(metrics, dict) else f' ± {statistics.stdev(m.get(key, 0.0) for m in metrics):.3f}'


def render(results, total_rows: int, detector: str = 'retina') -> str:
    """The results table and the accuracy goals, for the rows measured so far.

    ``results`` holds ``(row, name, metrics, seconds)``; ``metrics`` is one seed's dict or a list
    of per-seed dicts, reported as mean ± sample std with the per-seed values in their own column.
    """
    by_row = {r: _mean(m)['coco/bbox_mAP'] for r, _, m, _ in results}
    seeds = {r: [x['coco/bbox_mAP'] for x in m] for r, _, m, _ in results if not isinstance(m, dict)}
    fp, ft = by_row.get('fp32'), by_row.get('fp32_ft')

    def loss(ref, row, v):
        return f'{ref - v:+.3f}' if ref is not None and row not in ('fp32', 'fp32_ft') else '-'

    head = '| row | variant | bbox mAP | mAP@0.5 | mAP@0.75 | loss vs FP32 | loss vs FP32 fine-tuned |'
    head += ' per seed |' if seeds else ''
    lines = [head + ' wall time |', '|---' * (9 if seeds else 8) + '|']
    for row, name, metrics, secs in results:
        m = _mean(metrics)
        v = m['coco/bbox_mAP']
        line = (f"| `{row}` | {name} | {v:.3f}{_spread(metrics)} | {m['coco/bbox_mAP_50']:.3f} | "
                f"{m.get('coco/bbox_mAP_75', 0.0):.3f} | {loss(fp, row, v)} | {loss(ft, row, v)} |")
        if seeds:
            line += f" {' / '.join(f'{x:.3f}' for x in seeds.get(row, [v]))} |"
        lines.append(line + f' {secs:.0f}s |')
    summary = []
    if len(results) < total_rows:
        summary.append(f'- PARTIAL: {len(results)} of {total_rows} rows measured so far.')
    if fp is not None and 'fqn' in by_row:
        fqn_loss = fp - by_row['fqn']
        summary.append(f'- FQN W4A4 loses {fqn_loss:.3f} mAP against FP32 (target: at most 0.010): '
                       f"{'met' if fqn_loss <= 0.010 else 'missed'}.")
        if 'iao' in by_row:
            iao_loss = fp - by_row['iao']
            ratio = iao_loss / fqn_loss if fqn_loss > 0 else float('inf')
            line = (f'- IAO baseline loses {iao_loss:.3f}; IAO loss / FQN loss = {ratio:.2f} '
                    f"(target: at least 3; the paper reports > 3.8): {'met' if ratio >= 3 else 'missed'}.")
            if 'fqn' in seeds and 'iao' in seeds:  # the same seed's runs paired
                per = [(fp - i) / (fp - f) if fp > f else float('inf') for f, i in zip(seeds['fqn'], seeds['iao'])]
                line += f" Per seed: {', '.join(f'{r:.2f}' for r in per)}."
            summary.append(line)
    for row, what in (('score_floor', 'the score-threshold floor'),
                      ('floor_pc', 'the score floor and per-channel head-output ranges'),
                      ('recommended', 'the recommended recipe')):
        if fp is None or row not in by_row:
            continue
        fl_loss = fp - by_row[row]
        target = RECOMMENDED_TARGET.get(detector, 0.010) if row == 'recommended' else 0.010
        line = (f'- FQN W4A4 with {what} (not in the paper) loses {fl_loss:.3f} '
                f"(target: at most {target:.3f}): {'met' if fl_loss <= target else 'missed'}.")
        if 'iao' in by_row:
            iao_loss = fp - by_row['iao']
            line += (f' IAO loss / its loss = {iao_loss / fl_loss if fl_loss > 0 else float("inf"):.2f} '
                     '(IAO without them).')
        summary.append(line)
    if ft is not None and 'fqn' in by_row:
        fqn_q = ft - by_row['fqn']
        line = (f'- Against FP32 fine-tuned with the same budget (the extra training alone moves FP32 by '
                f'{ft - fp:+.3f}), FQN W4A4 loses {fqn_q:.3f}' if fp is not None else
                f'- Against FP32 fine-tuned with the same budget, FQN W4A4 loses {fqn_q:.3f}')
        if 'iao' in by_row:
            iao_q = ft - by_row['iao']
            line += f', IAO {iao_q:.3f} (ratio {iao_q / fqn_q if fqn_q > 0 else float("inf"):.2f})'
        summary.append(line + '.')
    return '\n'.join(lines) + ('\n\n' + '\n'.join(summary) if summary else '')


if __name__ == '__main__':
    main()
