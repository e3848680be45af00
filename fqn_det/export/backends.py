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


def exported_files(path, backend: str):
    """``(integer model file, {stage: ONNX file})`` for what the user named, by its exact name.

    An export directory means its ``model.fqnint`` (and ``model.onnx``); a
    ``.fqnint`` file is used as named; an ``.onnx`` file is used as named, with the
    integer model of the same stem beside it (``other.onnx`` -> ``other.fqnint``),
    else the export's ``model.fqnint``. A missing file is named in the error.
    """
    path = Path(path)
    if backend not in ('engine', 'onnxruntime'):
        raise ValueError(f"backend must be 'engine' or 'onnxruntime', got {backend!r}")
    if path.is_dir():
        int_file, onnx_file = path / 'model.fqnint', path / 'model.onnx'
    elif path.suffix == '.onnx':
        onnx_file = path
        same_stem = path.with_suffix('.fqnint')
        int_file = same_stem if same_stem.is_file() else path.with_name('model.fqnint')
        if not int_file.is_file():
            raise FileNotFoundError(f'{path}: the integer model file it belongs to (which holds its graph\'s '
                                    f'scales and decoding settings) was not found: looked for {same_stem} and '
                                    f'{int_file}')
    else:
        int_file, onnx_file = path, path.with_name('model.onnx')
    if not int_file.is_file():
        raise FileNotFoundError(f'integer model file not found: {int_file}')
    if backend == 'onnxruntime' and not onnx_file.is_file():
        raise FileNotFoundError(f'ONNX model not found: {onnx_file}')
    return int_file, {'features': onnx_file}


def load_backend(path, backend: str):
    """``(backend runner, meta)`` for an exported ``.fqnint`` / ``.onnx`` file or export directory."""
    int_file, files = exported_files(path, backend)
    graphs, meta = load_int_model(int_file)
    if backend == 'engine':
        return EngineBackend(graphs), meta
    if 'roi' in graphs:
        files['roi'] = files['features'].with_name('roi_head.onnx')
        if not files['roi'].is_file():
            raise FileNotFoundError(f'ONNX model of the RoI head not found: {files["roi"]}')
    return OnnxBackend(graphs, files), meta


__all__: List[str] = ['EngineBackend', 'OnnxBackend', 'exported_files', 'load_backend']
