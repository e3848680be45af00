"""Shared by the benchmark scripts: machine description, results markdown."""
import platform
import subprocess
from pathlib import Path


def machine() -> str:
    """CPU model, cores, OS and library versions, for the recorded results."""
    cpu = 'unknown CPU'
    try:
        for line in open('/proc/cpuinfo'):
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
                break
    except OSError:
        pass
    import onnxruntime
    import torch
    return (f'{cpu}; {subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()} cores; '
            f'{platform.platform()}; Python {platform.python_version()}; torch {torch.__version__}; '
            f'onnxruntime {onnxruntime.__version__}')


def write_markdown(path, text: str) -> None:
    """Write a results file (atomically), creating its folder."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from fqn_det.utils.atomic import atomic_write_bytes
    atomic_write_bytes(path, lambda f: f.write(text.encode()))
