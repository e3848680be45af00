"""Shared by the benchmark scripts: machine description, results markdown."""
import platform
from pathlib import Path


def machine() -> str:
    """CPU model and vector flags, cores, OS and library versions, for the recorded results."""
    import onnxruntime
    import torch

    from fqn_det.utils.machine import describe
    # nproc would report OMP_NUM_THREADS, not the machine: describe() says both
    return (f'{describe()}; Python {platform.python_version()}; torch {torch.__version__}; '
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
