"""PerLevelForward: one walk for every per-level dense head (names, groups, factors, level checks)."""
import pytest
import torch

from fqn_det.nn.dataflow import RUN
from fqn_det.nn.qheads import PerLevelForward


class _Head(PerLevelForward):
    OUTPUTS = ('cls_score', 'bbox_pred', 'centerness')
    num_levels = 2

    def __init__(self, n_out=3):
        self.n_out = n_out

    def walk_level(self, b, x, level):
        return tuple(x + i for i in range(self.n_out))

    def output_factor(self, i, level):
        return torch.tensor(2.0 + level) if i == 1 else None


class _Recorder:
    def __init__(self):
        self.calls = []

    def output(self, x, name, group=None, factor=None):
        self.calls.append((name, group, None if factor is None else float(factor)))
        return x


def test_names_groups_and_factors():
    b = _Recorder()
    outs = _Head().walk(b, [torch.zeros(1), torch.zeros(1)])
    assert len(outs) == 3 and all(len(o) == 2 for o in outs)
    assert b.calls[:3] == [('cls_score.0', 'cls_scores', None), ('bbox_pred.0', 'bbox_preds', 2.0),
                           ('centerness.0', 'centernesses', None)]
    assert b.calls[4] == ('bbox_pred.1', 'bbox_preds', 3.0)
    # the fake-quant runner multiplies the dequantized output by the factor
    assert float(_Head().walk(RUN, [torch.ones(1)])[1][0]) == 2 * (1 + 1)


def test_level_count_and_output_count_are_checked():
    with pytest.raises(ValueError, match='quantized for 2 levels but got 3'):
        _Head().walk(_Recorder(), [torch.zeros(1)] * 3)
    with pytest.raises(TypeError, match='returned 2 outputs for the 3 names'):
        _Head(n_out=2).walk(_Recorder(), [torch.zeros(1)])
