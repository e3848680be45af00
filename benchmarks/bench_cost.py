"""Cost of FQN, measured side by side in one run: QAT vs FP iterations, calibration vs eval, memory.

    python benchmarks/bench_cost.py --out benchmarks/results/cost_retina_synthetic.md
    python benchmarks/bench_cost.py \
        --config configs/fqn/retinanet_r18-tiny_fpn_fqn-w4a4-floor-pc_2e_synthetic.py  # another recipe

* QAT iteration time / FP iteration time: the same batches, forward + backward +
  optimizer step, the FP detector and its W4A4 FQN counterpart interleaved
  (median over repeats);
* calibration of n=20 batches / 20 eval forwards of the FP detector on the same
  batches (data loading excluded from both);
* 20 eval forwards of the calibrated W4A4 detector, integer-exact (what
  validation and ``tools/test.py`` run) and in float fake quantization, / the
  same 20 FP eval forwards;
* peak memory of calibration vs 20 eval forwards: each in a fresh process
  (``ru_maxrss`` of that process, minus its resident size before the phase).

Goals: QAT iteration at most 1.3x FP; calibration at most 2x eval.
Random weights are fine here: cost does not depend on the values.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


from common import write_results

FP_CFG = 'configs/fqn/retinanet_r18-tiny_fpn_12e_synthetic.py'
Q_CFG = 'configs/fqn/retinanet_r18-tiny_fpn_fqn-w4a4_2e_synthetic.py'


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--config', default=Q_CFG, help='the W4A4 config whose cost is measured against the FP32 one')
    p.add_argument('--img-size', type=int, default=128)
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--repeats', type=int, default=10, help='timed iterations of each kind')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--memory-repeats', type=int, default=2,
                   help='fresh processes per memory phase (calibration, eval); the largest peak is kept')
    p.add_argument('--out', help='write the results markdown here')
    p.add_argument('--phase', choices=['calib', 'eval'], help=argparse.SUPPRESS)  # memory child process
    args = p.parse_args()
    if args.repeats < 1 or args.memory_repeats < 1:
        p.error('--repeats and --memory-repeats must be at least 1')
    return args


def setup(args):
    import torch
    from mmdet.registry import MODELS
    from mmdet.testing import demo_mm_inputs
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    import fqn_det  # noqa: F401
    register_all_modules()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    fp_cfg, q_cfg = Config.fromfile(FP_CFG), Config.fromfile(args.config)
    fp = MODELS.build(fp_cfg.model)
    q = MODELS.build(q_cfg.model)
    batches = [demo_mm_inputs(batch_size=args.batch_size, image_shapes=(3, args.img_size, args.img_size),
                              num_items=[5] * args.batch_size, num_classes=5) for _ in range(20)]
    return fp, q, fp_cfg, batches


def train_step_time(model, optim, data) -> float:
    t = time.perf_counter()
    model.train_step(data, optim)
    return time.perf_counter() - t


def forwards(model, batches) -> float:
    import torch
    t = time.perf_counter()
    with torch.no_grad():
        for data in batches:
            model(**model.data_preprocessor(data, False), mode='tensor')
    return time.perf_counter() - t


def calibration(q, batches) -> float:
    from fqn_det.quant import finish_calibration, start_calibration
    q.eval()
    t = time.perf_counter()
    start_calibration(q.detector)
    forwards(q, batches)
    finish_calibration(q.detector)
    q.calibrated.fill_(1)
    return time.perf_counter() - t


def rss_mb() -> float:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2 ** 20


def memory_child(args) -> None:
    fp, q, _, batches = setup(args)
    fp.eval()
    forwards(fp, batches[:1])  # warm-up outside the measured window
    base = rss_mb()
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    calibration(q, batches) if args.phase == 'calib' else forwards(fp, batches)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(dict(base=base, peak=peak, peak_before=peak_before)))


def main():
    args = parse_args()
    if args.phase:
        return memory_child(args)
    from mmengine.optim import build_optim_wrapper
    fp, q, fp_cfg, batches = setup(args)
    calibration(q, batches)  # QAT starts from a calibrated model
    fp.train(), q.train()
    fp_opt = build_optim_wrapper(fp, fp_cfg.optim_wrapper)
    q_opt = build_optim_wrapper(q, fp_cfg.optim_wrapper)
    for m, o in ((fp, fp_opt), (q, q_opt)):  # warm-up
        train_step_time(m, o, batches[0])
    from fqn_det.quant import fused
    fused_on = fused.load() is not None
    fp_t, q_t, q_torch_t = [], [], []
    for i in range(args.repeats):
        data = batches[1 + i % 19]
        fp_t.append(train_step_time(fp, fp_opt, data))
        q_t.append(train_step_time(q, q_opt, data))
        if fused_on:  # the same QAT step on PyTorch ops only (the fallback), for comparison
            os.environ[fused.ENV_SWITCH] = '0'
            q_torch_t.append(train_step_time(q, q_opt, data))
            os.environ[fused.ENV_SWITCH] = '1'
    from fqn_det.nn.integer_eval import float_arithmetic
    cal_t, ev_t, int_t, fq_t = [], [], [], []
    for _ in range(3):
        fp.eval()
        ev_t.append(forwards(fp, batches))
        cal_t.append(calibration(q, batches))
        int_t.append(forwards(q, batches))  # eval mode, calibrated: the integer engine's arithmetic
        with float_arithmetic():
            fq_t.append(forwards(q, batches))
    mem = {}
    for phase in ('eval', 'calib') * args.memory_repeats:
        out = subprocess.run([sys.executable, __file__, '--phase', phase, '--config', args.config,
                              '--img-size', str(args.img_size),
                              '--batch-size', str(args.batch_size), '--threads', str(args.threads)],
                             capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        r = json.loads(out)
        mem.setdefault(phase, []).append(r['peak'] - r['base'])
    qat = statistics.median(q_t) / statistics.median(fp_t)
    cal = statistics.median(cal_t) / statistics.median(ev_t)
    mem_ratio = (max(mem['calib']) + 1e-9) / (max(mem['eval']) + 1e-9)
    rows = [
        ('QAT iteration / FP iteration', f'{statistics.median(q_t) * 1e3:.0f} ms / '
         f'{statistics.median(fp_t) * 1e3:.0f} ms', f'{qat:.2f}x', '<= 1.3x', qat <= 1.3),
    ]
    if q_torch_t:
        qt = statistics.median(q_torch_t) / statistics.median(fp_t)
        rows.append(('QAT iteration on PyTorch ops only (`FQN_DET_FUSED=0`) / FP iteration',
                     f'{statistics.median(q_torch_t) * 1e3:.0f} ms / {statistics.median(fp_t) * 1e3:.0f} ms',
                     f'{qt:.2f}x', '-', None))
    rows += [
        ('calibration (n=20) / 20 FP eval forwards', f'{statistics.median(cal_t):.2f} s / '
         f'{statistics.median(ev_t):.2f} s', f'{cal:.2f}x', '<= 2x', cal <= 2.0),
        ('W4A4 eval forwards, integer-exact (validation, `tools/test.py`) / 20 FP eval forwards',
         f'{statistics.median(int_t):.2f} s / {statistics.median(ev_t):.2f} s',
         f'{statistics.median(int_t) / statistics.median(ev_t):.2f}x', '-', None),
        ('W4A4 eval forwards, float fake quantization (`float_arithmetic()`) / 20 FP eval forwards',
         f'{statistics.median(fq_t):.2f} s / {statistics.median(ev_t):.2f} s',
         f'{statistics.median(fq_t) / statistics.median(ev_t):.2f}x', '-', None),
        ('peak memory above baseline: calibration / eval', f"{max(mem['calib']):.0f} MB / "
         f"{max(mem['eval']):.0f} MB", f'{mem_ratio:.2f}x', '-', None),
    ]
    lines = ['| measure | values | ratio | target | met |', '|---|---|---|---|---|']
    for name, vals, ratio, target, met in rows:
        lines.append(f"| {name} | {vals} | {ratio} | {target} | {'-' if met is None else ('yes' if met else 'no')} |")
    table = '\n'.join(lines)
    print(table)
    if args.out:
        write_results(args.out, 'FQN cost, side by side',
                      [f'small RetinaNet of `{FP_CFG}` vs its FQN W4A4 (`{args.config}`), {args.img_size}px, batch '
                       f'{args.batch_size}, {args.threads} threads, median of {args.repeats} interleaved iterations',
                       'fused CPU kernels (`fqn_det/quant/fused.py`): '
                       + ('built and used' if fused_on else 'not available, PyTorch ops used')],
                      table)


if __name__ == '__main__':
    main()
