"""ChannelsLastHook: 4-D weights become channels-last; values, outputs and training are unchanged."""
import copy
from types import SimpleNamespace

import torch
from torch import nn

from fqn_det.engine.hooks import ChannelsLastHook
from fqn_det.nn.qconv import QConv2d
from fqn_det.quant import ActQuantizer, QScheme, WeightQuantizer


def _model():
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 6, 3, padding=1)
    q = QConv2d(conv, nn.BatchNorm2d(6), relu=True, w_quant=WeightQuantizer(QScheme(4, per_channel=True), 6),
                out_quant=[ActQuantizer(QScheme(4), ema_stat='minmax', name='q')])
    q.link_input(ActQuantizer(QScheme(8), name='in'))  # used on its own: a (not calibrated) input quantizer
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), q)


def _step(model, x):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)  # linear in the gradients
    out = model(x)
    out.square().mean().backward()
    opt.step()
    return out.detach(), {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_converts_weights_and_keeps_training_identical():
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    ref = _model().train()
    model = copy.deepcopy(ref)
    ChannelsLastHook().before_run(SimpleNamespace(model=model))
    convs = [m.weight for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 2 and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    assert not all(w.is_contiguous() for w in convs)
    for _ in range(2):
        out_ref, sd_ref = _step(ref, x)
        out, sd = _step(model, x)
        torch.testing.assert_close(out, out_ref, rtol=1e-4, atol=1e-5)
    for k in sd_ref:
        torch.testing.assert_close(sd[k], sd_ref[k], rtol=1e-4, atol=1e-5, msg=k)
    # a checkpoint loaded afterwards (mmengine loads after before_run) keeps the format
    model.load_state_dict(_model().state_dict())
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_a_model_wrapped_for_distributed_training_is_left_alone(monkeypatch):
    """DDP's gradient buckets keep the strides they were built with: the hook does not convert."""
    from fqn_det.engine.hooks import channels_last_hook
    monkeypatch.setattr(channels_last_hook, 'is_model_wrapper', lambda m: True)
    model = _model()
    ChannelsLastHook().before_run(SimpleNamespace(model=model))
    assert all(m.weight.is_contiguous() for m in model.modules() if isinstance(m, nn.Conv2d))


class _RoIModel(nn.Module):
    def __init__(self):
        super().__init__()
        from mmcv.ops import RoIAlign
        torch.manual_seed(3)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.roi = RoIAlign((7, 7), spatial_scale=1.0, sampling_ratio=0)

    def forward(self, x, rois):
        return self.roi(self.conv(x), rois)


def test_mmcv_roi_align_still_gets_nchw_features():
    """mmcv's CPU RoIAlign reads raw NCHW memory: NHWC features would give wrong RoI features."""
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    rois = torch.tensor([[0, 1., 1., 9., 9.], [1, 2., 3., 12., 14.]])
    model = _RoIModel()
    ref = model(x, rois)
    model.conv.to(memory_format=torch.channels_last)
    assert not torch.allclose(model(x, rois), ref, atol=1e-3)  # the failure this guards against
    model = _RoIModel()
    ChannelsLastHook().before_run(SimpleNamespace(model=model))
    ChannelsLastHook().before_run(SimpleNamespace(model=model))  # a second runner: one pre-hook only
    assert len(model.roi._forward_pre_hooks) == 1
    torch.testing.assert_close(model(x, rois), ref, rtol=1e-4, atol=1e-5)
