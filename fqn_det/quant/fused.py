"""Fused CPU kernels for QAT: built once on first use, PyTorch ops otherwise.

Fake quantization runs on every activation and weight of every QAT step. In
plain PyTorch it is seven passes over memory forward (divide, add, round, clamp,
compare, subtract, multiply) and two backward (mask to float, multiply); the
FQN EMA statistic adds two ``torch.topk`` calls per activation, and each
quantizer's range bookkeeping (per-channel min/max, EMA ``lerp``, scale and
zero-point) some ten small tensor operations per step. ``csrc/fake_quant.cpp``
does the same float operations in the same order in one pass each way, selects
the same two order statistics with bounded heaps, and does a quantizer's range
and qparams update in one call (calling ATen's own ``lerp``), so every result is
bit for bit that of the PyTorch path (tested) and QAT runs the same numbers,
only faster (``benchmarks/bench_cost.py``).

The kernels are compiled with :func:`torch.utils.cpp_extension.load` into
torch's extension cache (``TORCH_EXTENSIONS_DIR``, default
``~/.cache/torch_extensions``) the first time they are needed; ``make setup``
builds them ahead of time (~20 s). When they cannot be built (no C++ compiler,
no ninja) one warning says so and the PyTorch path runs instead; nothing else
changes. ``FQN_DET_FUSED=0`` turns them off.
"""
from __future__ import annotations

import os
import platform
import shutil
import sys
import warnings
from pathlib import Path
from typing import Optional, Tuple

import torch
from torch import Tensor

ENV_SWITCH = 'FQN_DET_FUSED'
_SOURCE = Path(__file__).with_name('csrc') / 'fake_quant.cpp'
_state: dict = {}  # 'ops': the loaded op namespace, or None once loading failed


def _build_flags() -> Tuple[str, list]:
    flags = ['-O3', '-ffp-contract=off', '-fno-math-errno']
    cap = 'default'
    if platform.machine().lower() in ('x86_64', 'amd64'):
        cap = torch.backends.cpu.get_cpu_capability().lower()
        if cap in ('avx2', 'avx512'):
            flags.append('-mavx2')  # AVX-512 machines run AVX2 code too
    # The capability is part of the name: a cache shared by different CPUs keeps one build each.
    return f'fqn_det_fake_quant_{cap}', flags


def _ninja_on_path() -> None:
    # ``pip install ninja`` puts it beside the interpreter, which is not on PATH when a
    # virtual environment's python is run without activating the environment.
    bin_dir = os.path.dirname(sys.executable)
    if shutil.which('ninja') is None and shutil.which('ninja', path=bin_dir):
        os.environ['PATH'] = bin_dir + os.pathsep + os.environ.get('PATH', '')


def enabled() -> bool:
    """Whether the switch allows the fused kernel (``FQN_DET_FUSED`` not 0/false/off)."""
    return os.environ.get(ENV_SWITCH, '1').strip().lower() not in ('0', 'false', 'off', 'no')


def _load_library(verbose: bool) -> object:
    if not hasattr(torch.ops.fqn_det, 'fake_quant_forward'):  # not yet loaded in this process
        from torch.utils.cpp_extension import load as load_extension
        _ninja_on_path()
        name, flags = _build_flags()
        load_extension(name=name, sources=[str(_SOURCE)], extra_cflags=flags, is_python_module=False,
                       verbose=verbose)
    ops = torch.ops.fqn_det
    for op in ('fake_quant_forward', 'fake_quant_backward', 'strided_order_stats', 'minmax_qparams_',
               'ema_qparams_'):
        getattr(ops, op)  # raises if the library did not register it
    return ops


def load(verbose: bool = False) -> Optional[object]:
    """The ``torch.ops.fqn_det`` namespace with the fused ops, building them if needed.

    Returns None, after one warning, when the kernels cannot be built or loaded.
    """
    if 'ops' not in _state:
        try:
            _state['ops'] = _load_library(verbose)
        except Exception as e:  # noqa: BLE001  any build or load failure: PyTorch ops instead
            last = str(e).strip().splitlines()[-1] if str(e).strip() else repr(e)
            warnings.warn(f'fqn_det: the fused fake-quant kernel could not be built or loaded '
                          f'({type(e).__name__}: {last}); using PyTorch ops (same results, QAT slower). '
                          f'Set {ENV_SWITCH}=0 to silence this.', RuntimeWarning)
            _state['ops'] = None
    return _state['ops']


def _dense(x: Tensor) -> bool:
    return x.is_contiguous() or (x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last))


def usable(x: Tensor) -> bool:
    """Whether ``x`` can take the fused path: float32, CPU, contiguous, eager mode, switch on."""
    if not (x.device.type == 'cpu' and x.dtype == torch.float32 and _dense(x)):
        return False
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling():
        return False
    return enabled() and load() is not None


def supports(x: Tensor, scale: Tensor, axis: Optional[int]) -> bool:
    """Whether the kernel takes this call: per tensor, or per channel along dim 0 of a contiguous ``x``."""
    if scale.numel() > 1 and not (axis == 0 and x.is_contiguous() and scale.dtype == torch.float32):
        return False
    return usable(x)


def forward(x: Tensor, scale: Tensor, zero_point: Tensor, qmin: int, qmax: int,
            need_mask: bool) -> Tuple[Tensor, Tensor]:
    """Fake quantization of ``x`` and, if asked, its inside-the-range mask (``supports`` must hold)."""
    if scale.dtype != torch.float32 or not scale.is_contiguous():
        scale = scale.float().contiguous()
    if zero_point.dtype != torch.int32 or not zero_point.is_contiguous():
        zero_point = zero_point.to(torch.int32).contiguous()
    return _state['ops'].fake_quant_forward(x, scale, zero_point, qmin, qmax, need_mask)


def backward(grad: Tensor, mask: Tensor) -> Tensor:
    """``grad * mask``; PyTorch ops when the gradient's layout differs from the mask's."""
    if (grad.dtype == torch.float32 and grad.device.type == 'cpu' and grad.stride() == mask.stride()
            and _dense(grad) and not torch.is_grad_enabled()):
        return _state['ops'].fake_quant_backward(grad, mask)
    return grad * mask.to(grad.dtype)


def qparams_usable(scale: Tensor, zero_point: Tensor, *ranges: Tensor) -> bool:
    """Whether the qparams ops take these buffers: float32 scale, int32 zero-point, float32 ranges, all on the CPU."""
    if not (scale.dtype == torch.float32 and zero_point.dtype == torch.int32 and scale.device.type == 'cpu'
            and zero_point.device.type == 'cpu' and scale.is_contiguous() and zero_point.is_contiguous()):
        return False
    if not all(t.dtype == torch.float32 and t.device.type == 'cpu' for t in ranges):
        return False
    return usable(scale)


def minmax_qparams_(w: Tensor, scale: Tensor, zero_point: Tensor, qmin: int, qmax: int, symmetric: bool) -> None:
    """Set ``scale``/``zero_point`` to ``calc_qparams`` of the min and max of each slice of ``w`` along dim 0.

    One range of all of ``w`` when the buffers hold one value. ``w`` must be contiguous
    and non-empty, and :func:`qparams_usable` must hold; the values are those of
    ``amin``/``amax`` followed by :func:`fqn_det.quant.functional.calc_qparams`.
    """
    _state['ops'].minmax_qparams_(w, scale, zero_point, qmin, qmax, symmetric)


def ema_qparams_(lo: Tensor, hi: Tensor, min_val: Tensor, max_val: Tensor, scale: Tensor, zero_point: Tensor,
                 initialized: Tensor, momentum: float, qmin: int, qmax: int, symmetric: bool) -> None:
    """One EMA step of an activation range and its qparams, in place.

    Once ``initialized``: ``min_val``/``max_val`` become ``torch.lerp`` towards ``lo``/``hi``
    (ATen's kernel, called from C++); before that they take ``lo``/``hi``. Then
    ``scale``/``zero_point`` become ``calc_qparams`` of the new range and ``initialized`` 1.
    """
    _state['ops'].ema_qparams_(lo, hi, min_val, max_val, scale, zero_point, initialized, momentum, qmin, qmax,
                               symmetric)


def strided_order_stats(x: Tensor, step: int, k_lo: int, k_hi: int, check_finite: bool = False) -> Tensor:
    """``[k_lo-th smallest, k_hi-th largest, all finite]`` of ``x``'s elements ``0, step, 2 * step, ...``.

    Elements are taken in memory order. The third value is 1.0 when ``check_finite``
    is False or every element of ``x`` (not only the sample) is finite, else 0.0.
    """
    return _state['ops'].strided_order_stats(x, step, k_lo, k_hi, check_finite)
