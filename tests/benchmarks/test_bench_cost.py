"""bench_cost end to end on a tiny setting: every row measured, the fused/PyTorch comparison included."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_cost_writes_all_rows(tmp_path):
    out = tmp_path / 'cost.md'
    # any W4A4 config; this one with per-channel outputs
    cfg = 'configs/fqn/retinanet_r18-tiny_fpn_fqn-w4a4-floor-pc_2e_synthetic.py'
    subprocess.run([sys.executable, 'benchmarks/bench_cost.py', '--img-size', '64', '--batch-size', '2',
                    '--repeats', '2', '--memory-repeats', '1', '--threads', '1', '--config', cfg, '--out', str(out)],
                   cwd=ROOT, check=True, capture_output=True, text=True, timeout=600)
    text = out.read_text()
    assert f'FQN W4A4 (`{cfg}`)' in text
    assert 'fused CPU kernels (`fqn_det/quant/fused.py`): built and used' in text
    for row in ('| QAT iteration / FP iteration |',
                '| QAT iteration on PyTorch ops only (`FQN_DET_FUSED=0`) / FP iteration |',
                '| calibration (n=20) / 20 FP eval forwards |',
                '| W4A4 eval forwards, integer-exact (validation, `tools/test.py`) / 20 FP eval forwards |',
                '| W4A4 eval forwards, float fake quantization (`float_arithmetic()`) / 20 FP eval forwards |',
                '| peak memory above baseline: calibration / eval |'):
        assert row in text
    # each measured row carries a ratio; the two targeted rows say met or not
    assert text.count('x | <= ') == 2 and text.count('| yes |') + text.count('| no |') == 2


def test_bench_cost_refuses_zero_repeats():
    res = subprocess.run([sys.executable, 'benchmarks/bench_cost.py', '--memory-repeats', '0'], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and '--repeats and --memory-repeats must be at least 1' in res.stderr
