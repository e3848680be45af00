"""The integer arithmetic shared by the engine and integer-exact evaluation."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from fqn_det.quant import integer_ops as iops


def _ort_quantize_linear(x: np.ndarray, scale: np.float32, zp: int) -> np.ndarray:
    g = helper.make_graph([helper.make_node('QuantizeLinear', ['x', 's', 'z'], ['y'])], 'g',
                          [helper.make_tensor_value_info('x', TensorProto.FLOAT, [x.size])],
                          [helper.make_tensor_value_info('y', TensorProto.UINT8, [x.size])],
                          [helper.make_tensor('s', TensorProto.FLOAT, [], [float(scale)]),
                           helper.make_tensor('z', TensorProto.UINT8, [], [zp])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid('', 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    sess = ort.InferenceSession(m.SerializeToString(), providers=['CPUExecutionProvider'])
    return sess.run(None, {'x': x})[0].astype(np.int64)


@pytest.mark.parametrize('scale', [0.0123457, 0.017, 1 / 3])
def test_input_quantization_is_onnx_quantize_linear(scale):
    s = np.float32(scale)
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(400_000) * 3).astype(np.float32)
    # exact ties and their float32 neighbours, where float64 arithmetic would round differently
    k = rng.integers(-120, 120, 20_000).astype(np.float32) + np.float32(0.5)
    ties = (k * s).astype(np.float32)
    x = np.concatenate([x, ties, np.nextafter(ties, np.float32(np.inf)), np.nextafter(ties, -np.float32(np.inf))])
    got = iops.quantize_input(torch.from_numpy(x), s, 128, 0, 255).numpy()
    assert np.array_equal(got, _ort_quantize_linear(x, s, 128))
    double = np.clip(np.rint(x.astype(np.float64) / np.float64(s)) + 128, 0, 255)
    assert (double != got).any()  # the float64 quotient is not what QuantizeLinear computes


def test_dequantize_per_tensor_and_per_channel():
    q = torch.tensor([[[[0, 3]], [[7, 15]]]])  # (1, 2, 1, 2)
    assert torch.equal(iops.dequantize(q, 0.5, 3), torch.tensor([[[[-1.5, 0.0]], [[2.0, 6.0]]]]))
    got = iops.dequantize(q, [0.5, 0.25], [0, 7], axis=1)
    assert got.dtype == torch.float32
    assert torch.equal(got, torch.tensor([[[[0.0, 1.5]], [[0.0, 2.0]]]]))


def test_kernel_dtype_and_accumulator_bound():
    w = torch.tensor([[3, -4], [1, 1]])
    assert iops.accumulator_bound(w, 10, torch.tensor([5, -100])) == 120
    assert iops.kernel_dtype(2 ** 24 - 1) is torch.float32 and iops.kernel_dtype(2 ** 24) is torch.float64


def test_integer_add_rounds_as_the_real_sum():
    a, b = torch.arange(-8, 8), torch.arange(8, -8, -1)
    ma, sa = iops.rescale_multiplier(0.1, 0.07)
    mb, sb = iops.rescale_multiplier(0.05, 0.07)
    got = iops.integer_add(a, b, ma, sa, mb, sb, 10, 0, 255)
    want = torch.round(10 + (a * 0.1 + b * 0.05) / 0.07).long()
    assert torch.equal(got, want)


def test_isqrt_is_exact_near_squares_and_at_the_top_of_its_range():
    import math
    k = torch.tensor([1, 2, 3, 1000, 2 ** 26 + 3, 2 ** 31 - 1], dtype=torch.int64)
    v = torch.cat([k * k - 1, k * k, k * k + 1, torch.tensor([0, 2 ** 62 - 1])])
    assert iops.isqrt(v).tolist() == [math.isqrt(int(x)) for x in v]


def test_round_div_ties_away_from_zero():
    a = torch.tensor([5, -5, 4, -4, 7, 0])
    assert iops.round_div(a, torch.tensor(2)).tolist() == [3, -3, 2, -2, 4, 0]


def test_group_norm_levels_follow_the_float_group_norm():
    g = torch.Generator().manual_seed(0)
    c, groups, s_x, s_y = 16, 4, 0.3, 0.12
    d = torch.randint(-7, 9, (2, c, 5, 6), generator=g)  # centred 4-bit levels
    gamma = torch.randn(c, generator=g)
    gamma[3] = 0.0  # a dead channel gives beta alone
    beta = torch.randn(c, generator=g) * 0.3
    p = iops.group_norm_params(groups, gamma, beta, c, 1e-5, s_x, s_y)
    got = iops.group_norm(d, p, 8, 128, 0, 255)
    ref = torch.nn.functional.group_norm(d.double() * s_x, groups, gamma.double(), beta.double(), 1e-5)
    want = (torch.round(ref / s_y) + 128).clamp(0, 255).long()
    assert int((got - want).abs().max()) <= 1 and float((got == want).double().mean()) > 0.97
    assert torch.equal(got[:, 3], (128 + torch.round(beta[3] / s_y)).long().expand_as(got[:, 3]))
    flat = iops.group_norm(torch.full((1, c, 2, 2), 3), p, 8, 128, 0, 255)  # constant groups: beta
    assert torch.equal(flat[0, :, 0, 0], (128 + torch.round(beta / s_y)).long().clamp(0, 255))


def test_group_norm_refuses_what_int64_cannot_hold():
    p = iops.group_norm_params(1, None, None, 2, 1e-5, 0.1, 0.1)
    with pytest.raises(OverflowError, match='GroupNorm group of'):
        iops.group_norm(torch.zeros(1, 2, 256, 128, dtype=torch.int64), p, 2 ** 10, 0, 0, 255)  # m = 2^16
    with pytest.raises(ValueError, match='too large'):
        iops.group_norm_params(1, None, None, 2, 1.0, 1e-3, 0.1)  # eps / s_x^2 = 1e6
