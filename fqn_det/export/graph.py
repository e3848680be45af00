"""A small integer graph IR: named tensors with quantization, nodes with integer parameters.

Tensors between the input quantization and the head outputs are integers
``q`` standing for real values ``(q - zero_point) * scale``; nodes hold integer
weights, int32 biases and fixed-point requantization multipliers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Union

import numpy as np


@dataclass
class TensorQ:
    """Quantization of one graph tensor: per tensor, or per channel along ``axis``.

    Per-channel tensors (``scale`` and ``zero_point`` are lists, one value per
    channel) are only head outputs, which nothing but ``dequantize`` reads.
    """

    scale: Union[float, List[float]]
    zero_point: Union[int, List[int]]
    qmin: int
    qmax: int
    axis: Optional[int] = None

    @property
    def per_channel(self) -> bool:
        return self.axis is not None

    @property
    def max_abs_centered(self) -> int:
        """Largest ``|q - zero_point|``."""
        from ..quant.integer_ops import max_abs_centered
        return max_abs_centered(self.zero_point, self.qmin, self.qmax)

    def same_as(self, other: 'TensorQ') -> bool:
        return (self.scale, self.zero_point, self.qmin, self.qmax, self.axis) == \
            (other.scale, other.zero_point, other.qmin, other.qmax, other.axis)

    def broadcast(self, ndim: int):
        """``(scale, zero_point)`` as float64 / int64 tensors shaped to broadcast over a rank-``ndim`` tensor."""
        import torch
        s = torch.as_tensor(self.scale, dtype=torch.float64)
        z = torch.as_tensor(self.zero_point, dtype=torch.int64)
        if self.per_channel:
            shape = [1] * ndim
            shape[self.axis] = -1
            s, z = s.reshape(shape), z.reshape(shape)
        return s, z


@dataclass
class Node:
    """One operation. ``attrs`` are JSON scalars/lists, ``params`` numpy arrays."""

    op: str
    name: str
    inputs: List[str]
    outputs: List[str]
    attrs: Dict[str, Any] = field(default_factory=dict)
    params: Dict[str, np.ndarray] = field(default_factory=dict)


#: Ops whose inputs and outputs are integers (plus the boundary ops).
INTEGER_OPS = {'conv', 'linear', 'add', 'maxpool', 'upsample', 'relu', 'requant', 'flatten', 'group_norm'}
BOUNDARY_OPS = {'quantize', 'dequantize'}


@dataclass
class IntGraph:
    """A list of nodes in execution order, tensor quantization, inputs and outputs.

    ``stage`` groups graphs of one model: e.g. Faster R-CNN has a ``'features'``
    graph (image -> FPN features and RPN outputs) and a ``'roi'`` graph
    (RoI features -> box head outputs).
    """

    nodes: List[Node] = field(default_factory=list)
    tensors: Dict[str, TensorQ] = field(default_factory=dict)
    inputs: List[str] = field(default_factory=list)
    outputs: List[str] = field(default_factory=list)
    output_groups: Dict[str, List[str]] = field(default_factory=dict)

    def non_integer_ops(self) -> List[str]:
        """Nodes between input quantization and outputs that are not integer ops."""
        return [f'{n.name} ({n.op})' for n in self.nodes if n.op not in INTEGER_OPS | BOUNDARY_OPS]

    def layer_bits(self) -> List[tuple]:
        """``(node name, op, weight bits, output bits)`` for weighted layers."""
        out = []
        for n in self.nodes:
            if n.op in ('conv', 'linear'):
                t = self.tensors[n.outputs[0]]
                out.append((n.name, n.op, int(n.attrs['w_bits']), int(np.ceil(np.log2(t.qmax - t.qmin + 1)))))
        return out
