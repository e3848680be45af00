"""Runners for an exported model: the integer engine or onnxruntime, same interface."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import numpy as np
import torch
from torch import Tensor

from .engine import IntegerEngine
from .graph import IntGraph
from .int_model import IntModelFormatError, load_int_model


class EngineBackend:
    """Runs the ``.fqnint`` graphs with :class:`IntegerEngine`."""

    def __init__(self, graphs: Dict[str, IntGraph]) -> None:
        self.graphs = graphs
        self.engines = {k: IntegerEngine(g) for k, g in graphs.items()}

    def run(self, stage: str, feeds: Dict[str, Tensor]) -> Dict[str, Tensor]:
        return self.engines[stage].run(feeds)


class OnnxBackend:
    """Runs ``model.onnx`` (and ``roi_head.onnx``) with onnxruntime's CPU provider."""

    def __init__(self, graphs: Dict[str, IntGraph], onnx_files: Dict[str, Path], threads: int = 2) -> None:
        self.graphs = graphs
        self.sessions = {k: _load_onnx(p, threads) for k, p in onnx_files.items()}

    def run(self, stage: str, feeds: Dict[str, Tensor]) -> Dict[str, Tensor]:
        from .onnx_writer import run_onnx
        g = self.graphs[stage]
        np_feeds = {}
        for k, v in feeds.items():
            np_feeds[k] = v.numpy().astype(np.uint8) if k in g.tensors else v.float().numpy()
        out = run_onnx(self.sessions[stage], np_feeds)
        res = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in out.items()}
        for k in g.outputs:
            if k in g.tensors:
                res[k] = res[k].long()
        return res


def _load_onnx(path: Path, threads: int):
    """An onnxruntime session; a file onnxruntime cannot load is an :class:`IntModelFormatError`."""
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidGraph, InvalidProtobuf, NotImplemented

    from .onnx_writer import ort_session
    try:
        return ort_session(path, threads)
    except (InvalidProtobuf, InvalidGraph, Fail, NotImplemented) as e:
        int4 = int4_refusal_message(path, e)
        if int4 is not None:
            raise IntModelFormatError(int4) from e
        raise IntModelFormatError(f'{path}: truncated or corrupt ONNX model ({type(e).__name__}: {e})') from e


def int4_refusal_message(path: Path, error: Exception):
    """The message for an onnxruntime that cannot load the INT4 weights of ``path`` (None if it has none)."""
    import onnx
    import onnxruntime

    from .onnx_writer import uses_int4
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001  unreadable: the caller reports a corrupt file
        return None
    if not uses_int4(model):
        return None
    return (f'{path}: onnxruntime {onnxruntime.__version__} cannot load this model\'s 4-bit (INT4/UINT4, '
            f'opset {model.opset_import[0].version}) weights ({type(error).__name__}: {error}); re-export it '
            'with tools/export.py --onnx-opset 17 for 8-bit weight containers, or use an onnxruntime with INT4 '
            'support')


def load_backend(path, backend: str):
    """``(backend runner, meta)`` for an exported ``.fqnint`` file or export directory."""
    path = Path(path)
    int_file = path / 'model.fqnint' if path.is_dir() else path
    if backend == 'onnxruntime' and path.suffix == '.onnx':
        int_file = path.with_name('model.fqnint')
    graphs, meta = load_int_model(int_file)
    if backend == 'engine':
        return EngineBackend(graphs), meta
    if backend == 'onnxruntime':
        root = int_file.parent
        files = {'features': root / 'model.onnx'}
        if 'roi' in graphs:
            files['roi'] = root / 'roi_head.onnx'
        for f in files.values():
            if not f.is_file():
                raise FileNotFoundError(f'ONNX model not found: {f}')
        return OnnxBackend(graphs, files), meta
    raise ValueError(f"backend must be 'engine' or 'onnxruntime', got {backend!r}")


__all__: List[str] = ['EngineBackend', 'OnnxBackend', 'load_backend']
