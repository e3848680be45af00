"""An onnxruntime that refuses INT4 weights: the error names the opset-17 fallback."""
import onnx
import pytest
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidGraph

from fqn_det.export import backends, onnx_writer
from fqn_det.export.int_model import IntModelFormatError
from fqn_det.export.onnx_writer import to_onnx

from graphs import conv_graph


def _refuse_int4(model_or_path, threads=2):
    m = onnx.load(str(model_or_path))
    if onnx_writer.uses_int4(m):  # what a runtime without INT4 kernels raises
        raise InvalidGraph("[ONNXRuntimeError] : 10 : INVALID_GRAPH : This is an invalid model. Type Error: "
                           "Type 'tensor(uint4)' of input parameter (w4_3) of operator (Cast) is invalid.")
    return onnx_writer.ort_session.__wrapped__(model_or_path, threads)


def test_int4_refusal_names_the_fallback(tmp_path, monkeypatch):
    monkeypatch.setattr(_refuse_int4, '__wrapped__', onnx_writer.ort_session, raising=False)
    monkeypatch.setattr(onnx_writer, 'ort_session', _refuse_int4)
    p21, p17 = tmp_path / 'm21.onnx', tmp_path / 'm17.onnx'
    onnx.save(to_onnx(conv_graph(), opset=21), str(p21))
    onnx.save(to_onnx(conv_graph(), opset=17), str(p17))
    with pytest.raises(IntModelFormatError, match=r'm21.onnx: onnxruntime .* cannot load .*4-bit.*'
                                                  r'tools/export.py --onnx-opset 17'):
        backends._load_onnx(p21, 1)
    assert backends._load_onnx(p17, 1) is not None  # the 8-bit-container file loads


def test_a_corrupt_file_is_still_reported_as_corrupt(tmp_path):
    p = tmp_path / 'bad.onnx'
    p.write_bytes(b'\x00garbage')
    with pytest.raises(IntModelFormatError, match='truncated or corrupt ONNX model'):
        backends._load_onnx(p, 1)
