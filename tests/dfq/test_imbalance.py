"""The channel-unbalancing re-parameterization keeps the float detector's outputs and spreads its ranges."""
import torch
from mmdet.registry import MODELS

from conftest import batch, tiny_model_cfg
from fqn_det.dfq.imbalance import unbalance_channels


def test_same_function_wider_spread():
    torch.manual_seed(0)
    det = MODELS.build(tiny_model_cfg('retina')).eval()
    for m in det.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    d = det.data_preprocessor(batch(5), False)
    with torch.no_grad():
        ref = det(d['inputs'], mode='tensor')
    sd = {k: v.clone() for k, v in det.state_dict().items()}
    w = 'backbone.layer1.0.conv2.weight'
    before = sd[w].transpose(0, 1).flatten(1).abs().amax(1)
    assert unbalance_channels(sd, 32.0, seed=1) == 8  # ResNet-18: 8 BasicBlocks
    after = sd[w].transpose(0, 1).flatten(1).abs().amax(1)
    assert after.max() / after.min() > 10 * before.max() / before.min()
    det.load_state_dict(sd)
    with torch.no_grad():
        out = det(d['inputs'], mode='tensor')
    for a, b in zip(torch.utils._pytree.tree_leaves(ref), torch.utils._pytree.tree_leaves(out)):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4 * a.abs().max())
