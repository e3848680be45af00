"""`make demo` end to end on a tiny task: every step runs, the outputs exist, a second run uses the cache."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TINY = ['--num-train', '24', '--num-val', '8', '--img-size', '64', '--fp-epochs', '1']


def _demo(wd: Path, *extra: str) -> str:
    out = subprocess.run([sys.executable, str(ROOT / 'tools/demo.py'), '--work-dir', str(wd), *TINY, *extra],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def test_demo_runs_end_to_end_then_from_cache(tmp_path):
    wd = tmp_path / 'demo'
    first = _demo(wd)
    assert 'FP32 RetinaNet: training 1 epochs' in first
    for f in ('fp32.pth', 'results.md', 'exported/model.fqnint', 'exported/model.onnx',
              'plots/map_per_variant.png', 'plots/activation_histograms.png'):
        assert (wd / f).is_file() and (wd / f).stat().st_size > 0, f
    results = (wd / 'results.md').read_text()
    for row in ('| FP32 |', '| FQN W4A4 (fake-quant) |', '| FQN W4A4 integer engine |', '| FQN W4A4 ONNX Runtime |'):
        assert row in results
    assert 'non-integer ops between input quantization and head outputs: none' in results
    assert 'Random seed 801628347' in results  # the reference run's seed, fixed: a rerun reproduces it
    for log in ('fp32_train', 'int4_train'):
        assert 'seed: 801628347' in next((wd / log).glob('*/*.log')).read_text(), log
    fp_mtime = (wd / 'fp32.pth').stat().st_mtime_ns

    # the cached FP32 model with both extras: score floor, per-channel head outputs (exported too)
    second = _demo(wd, '--score-floor', '--per-channel-outputs')
    assert 'FP32 RetinaNet: cached' in second and 'training 1 epochs' not in second
    assert 'FP32: metrics of this checkpoint on this validation set, cached' in second
    # step 5 evaluates the QAT model; training does not validate it again
    assert 'Epoch(val)' not in next((wd / 'int4_train').glob('*/*.log')).read_text()
    assert (wd / 'fp32.pth').stat().st_mtime_ns == fp_mtime  # the cached checkpoint is reused, not rewritten
    results = (wd / 'results.md').read_text()
    label = 'FQN W4A4 + score floor + per-channel outputs'
    for row in (f'| {label} (fake-quant) |', f'| {label} integer engine |', f'| {label} ONNX Runtime |'):
        assert row in results
    dumped = next((wd / 'int4_train').glob('*_floor_pc.py')).read_text()
    assert "floor='score_thr'" in dumped and 'bbox_head.retina_cls' in dumped and 'a_per_channel=True' in dumped
