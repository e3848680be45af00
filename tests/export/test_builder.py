"""GraphBuilder: per-channel head outputs are dequantized, never read by an integer op."""
import numpy as np
import pytest
import torch

from fqn_det.export.builder import ExportError, GraphBuilder
from fqn_det.export.engine import IntegerEngine
from fqn_det.export.graph import TensorQ


def _with_per_channel_tensor():
    b = GraphBuilder()
    b.g.tensors['x'] = TensorQ([0.5, 0.1, 2.0], [2, 8, 15], 0, 15, axis=1)
    b.g.inputs.append('x')
    return b


@pytest.mark.parametrize('op', ['relu', 'flatten', 'int_output', 'maxpool'])
def test_integer_ops_refuse_per_channel_inputs(op):
    b = _with_per_channel_tensor()
    call = {'relu': lambda: b.relu('x', 'r'), 'flatten': lambda: b.flatten('x', 'f'),
            'int_output': lambda: b.int_output('x', 'feats'),
            'maxpool': lambda: b.maxpool(type('P', (), dict(kernel_size=2, stride=2, padding=0, dilation=1,
                                                             ceil_mode=False, out_quant=[None]))(), 'x')}[op]
    with pytest.raises(ExportError, match="tensor 'x' has per-channel ranges"):
        call()


def test_per_channel_dequantization_in_the_engine():
    b = _with_per_channel_tensor()
    b.output('x', 'y')
    q = torch.tensor([[[[2]], [[8]], [[0]]], [[[15]], [[0]], [[15]]]])
    y = IntegerEngine(b.g).run({'x': q})['y']
    expected = (q - torch.tensor([2, 8, 15]).reshape(1, 3, 1, 1)) * torch.tensor([0.5, 0.1, 2.0]).reshape(1, 3, 1, 1)
    assert torch.allclose(y, expected.float())
    s, z = b.g.tensors['x'].broadcast(2)
    assert s.shape == z.shape == (1, 3)
    assert TensorQ(0.5, 3, 0, 15).broadcast(4)[0].shape == ()
    assert TensorQ([0.5, 1.0], [3, 0], 0, 15, axis=1).max_abs_centered == 15
    assert not TensorQ([0.5], [3], 0, 15, axis=1).same_as(TensorQ(0.5, 3, 0, 15))
    assert np.isclose(float(s[0, 2]), 2.0)
