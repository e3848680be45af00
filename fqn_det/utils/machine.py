"""A one-line description of this machine for recorded results: CPU model, the vector
instructions that decide int8 kernel speed, cores and threads. Plain Python (torch optional)."""
from __future__ import annotations

import os
import platform
from typing import List, Tuple

#: /proc/cpuinfo flags worth naming, in order, with their usual spelling
VECTOR_FLAGS: Tuple[Tuple[str, str], ...] = (
    ('avx2', 'AVX2'), ('avx512f', 'AVX512F'), ('avx512_vnni', 'AVX512-VNNI'), ('avx_vnni', 'AVX-VNNI'),
    ('amx_int8', 'AMX-INT8'))


def cpu_model_and_flags(cpuinfo: str = '/proc/cpuinfo') -> Tuple[str, List[str]]:
    """The CPU's model name and its vector flags among :data:`VECTOR_FLAGS` (``('unknown CPU', [])``
    where ``cpuinfo`` is not readable, e.g. off Linux)."""
    model, flags = 'unknown CPU', set()
    try:
        with open(cpuinfo) as f:
            for line in f:
                key, _, value = line.partition(':')
                key = key.strip()
                if key == 'model name' and model == 'unknown CPU':
                    model = value.strip()
                elif key == 'flags' and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return model, [name for flag, name in VECTOR_FLAGS if flag in flags]


def describe(cpuinfo: str = '/proc/cpuinfo') -> str:
    """E.g. ``AMD EPYC 9B14 (AVX2, no AVX512-VNNI; torch kernels: AVX2), 2 cores, 2 torch threads; Linux-...``."""
    model, flags = cpu_model_and_flags(cpuinfo)
    vec = ', '.join(flags) if flags else 'no AVX2'
    if 'AVX512-VNNI' not in flags and 'AVX-VNNI' not in flags:
        vec += ', no AVX512-VNNI'
    try:
        import torch
        vec += f'; torch kernels: {torch.backends.cpu.get_cpu_capability()}'
        threads = f', {torch.get_num_threads()} torch thread(s)'
    except ImportError:  # torch is optional here
        threads = ''
    return f'{model} ({vec}), {os.cpu_count()} cores{threads}; {platform.platform()}'
