"""Shared by the benchmark scripts: machine description, results markdown."""
import os
import platform
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
    # nproc would report OMP_NUM_THREADS, not the machine: say both
    return (f'{cpu}; {os.cpu_count()} cores, {torch.get_num_threads()} torch thread(s); '
            f'{platform.platform()}; Python {platform.python_version()}; torch {torch.__version__}; '
            f'onnxruntime {onnxruntime.__version__}')


def write_markdown(path, text: str) -> None:
    """Write a results file (atomically), creating its folder."""
    from fqn_det.utils.atomic import atomic_write_bytes
    atomic_write_bytes(path, lambda f: f.write(text.encode()))


def write_results(path, title: str, settings, body: str) -> None:
    """``# title``, the command line, the machine and ``settings`` as bullets, then ``body``."""
    import sys
    script = Path(sys.argv[0]).name
    bullets = '\n'.join(f'- {x}' for x in [f'machine: {machine()}', *settings])
    write_markdown(path, f'# {title}\n\n`python benchmarks/{script} {" ".join(sys.argv[1:])}`\n\n'
                         f'{bullets}\n\n{body}\n')
    print(f'written: {path}')
