"""bench_export end to end on a tiny setting: every section measured, every target judged."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_export_writes_all_sections(tmp_path):
    out = tmp_path / 'export.md'
    subprocess.run([sys.executable, 'benchmarks/bench_export.py', '--tiny', '--detectors', 'faster', '--sizes', '64',
                    '--repeats', '1', '--calib-size', '64', '--e2e-size', '64', '--e2e-images', '1',
                    '--proposals', '20', '--threads', '1', '--out', str(out)], cwd=ROOT, check=True,
                   capture_output=True, text=True, timeout=900)
    text = out.read_text()
    assert re.search(r'CPU flags: AVX2 (yes|no), AVX-512 (yes|no), VNNI (yes|no) \(from /proc/cpuinfo\)', text)
    for row in ('| FP32 ONNX |', '| onnxruntime int8 (quantize_static) |', '| paper default |',
                '| symmetric weights |', '| per-channel head outputs |', '| float detector (PyTorch) |',
                '| integer ONNX (onnxruntime) |', '| integer engine (.fqnint) |'):
        assert text.count(row) >= 1, row
    assert 'opset 21, INT4 weights' in text and 'opset-17 ONNX (8-bit containers)' in text
    assert 'Per-op profile' in text and 'QLinearConv' in text and 'Peak resident memory' in text
    assert 'RoIAlign alone, 20 RoIs' in text and 'Integer engine vs FP32 PyTorch' in text
    targets = text.split('## Targets')[1].split('\n## ')[0]
    lines = [x for x in targets.splitlines() if x.startswith('- ')]
    assert len(lines) == 4
    assert all(re.search(r': (met|missed) \(', x) or 'not measurable here' in x for x in lines), lines
