"""DFQ's equalization pairs, derived from the detector's dataflow (plain PyTorch).

:class:`PairFinder` walks the quantized detector like the integer exporter;
its "tensor" is the layer that produced it. A layer with a fused ReLU whose
output is read only by convs/linears forms a pair with them (Nagel et al.,
ICCV 2019, sec. 4.1: ``W2 relu(W1 x)``, scaled channel by channel). A layer
whose output also reaches anything else (a residual add, a pool, a head
output, a flatten) or that has no ReLU is listed as skipped, with what its
output reaches.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from torch import nn

from ..nn.qdetector import walk_detector


class _Producer:
    __slots__ = ('layer',)

    def __init__(self, layer: Optional[nn.Module]) -> None:
        self.layer = layer


class PairFinder:
    """A :class:`~fqn_det.nn.dataflow.Builder` recording which layers read each layer's output."""

    def __init__(self, names: Dict[int, str]) -> None:
        self.names = names
        self.order: List[nn.Module] = []  # producers in the order the walk meets them
        self.consumers: Dict[int, List[nn.Module]] = {}
        self.other: Dict[int, List[str]] = {}

    def _name(self, m) -> str:
        return self.names.get(id(m), type(m).__name__)

    def _use(self, x: _Producer, what: str, layer: Optional[nn.Module] = None) -> None:
        p = x.layer
        if p is None:
            return
        if id(p) not in self.consumers:
            self.order.append(p)
            self.consumers[id(p)], self.other[id(p)] = [], []
        if layer is not None:
            if all(c is not layer for c in self.consumers[id(p)]):
                self.consumers[id(p)].append(layer)
        elif what not in self.other[id(p)]:
            self.other[id(p)].append(what)

    def input(self, x, q):
        return _Producer(None)

    int_input = input

    def conv(self, m, x, site=0):
        self._use(x, '', m)
        return _Producer(m)

    linear = conv

    def add(self, m, a, b, site=0):
        what = f'{"residual add" if m.relu else "add"} {self._name(m)}'
        self._use(a, what)
        self._use(b, what)
        return _Producer(None)

    def maxpool(self, m, x, site=0):
        self._use(x, f'max-pool {self._name(m)}')
        return _Producer(None)

    def avgpool(self, m, x, site=0):
        self._use(x, f'average pool {self._name(m)}')
        return _Producer(None)

    def group_norm(self, m, x, site=0):
        self._use(x, f'group norm {self._name(m)}')
        return _Producer(None)  # normalized per sample: no channel scaling passes through it

    def upsample(self, m, x, like, site=0):
        self._use(x, f'upsample {self._name(m)}')
        self._use(like, f'the size of upsample {self._name(m)}')
        return _Producer(None)

    def relu(self, x, name):
        self._use(x, f'a separate ReLU {name}')
        return _Producer(None)

    def flatten(self, x, name):
        self._use(x, f'flatten {name}')
        return _Producer(None)

    def output(self, x, name, group=None, factor=None):
        self._use(x, f'head output {name}')
        return x

    def int_output(self, x, group):
        self._use(x, f'{group} read by RoIAlign')
        return x


def _relative(producer: str, consumer: str) -> str:
    """``consumer`` without the dotted prefix it shares with ``producer``."""
    a, b = producer.split('.'), consumer.split('.')
    i = 0
    while i < min(len(a), len(b)) - 1 and a[i] == b[i]:
        i += 1
    return '.'.join(b[i:])


def pairs_from_dataflow(det: nn.Module) -> Tuple[List[Tuple[str, nn.Module, List[nn.Module]]], List[str]]:
    """``(name, producer, consumers)`` of every equalizable pair, and the skipped places with reasons."""
    names = {id(m): n for n, m in det.named_modules()}
    f = PairFinder(names)
    walk_detector(det, f, f)
    pairs, skipped = [], []
    for p in f.order:
        cons, other = f.consumers[id(p)], f.other[id(p)]
        name = names.get(id(p), type(p).__name__)
        reads = [_relative(name, names.get(id(c), type(c).__name__)) for c in cons]
        if p.relu and cons and not other:
            pairs.append((f'{name}->{",".join(reads)}', p, cons))
        elif cons or other:
            why = 'no ReLU at its output' if not p.relu else 'not through a ReLU alone'
            skipped.append(f'{name} -> {", ".join(reads + other)} ({why})')
    return pairs, skipped
