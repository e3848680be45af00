"""torchvision's ImageNet MobileNetV2 checkpoint in mmdet's MobileNetV2."""
import pytest
import torch
import torch.nn.functional as F
from mmdet.models.backbones import MobileNetV2

from fqn_det.models import CheckpointMismatchError
from fqn_det.models.imagenet_mobilenet import PooledClassifier, imagenet_mobilenet_v2_path, load_imagenet_mobilenet_v2


@pytest.fixture(scope='module')
def ckpt():
    return torch.load(str(imagenet_mobilenet_v2_path()), map_location='cpu', weights_only=True)




def _reference_features(sd, x):
    """torchvision's MobileNetV2 ``features`` written out from the checkpoint keys alone."""
    def cbr(prefix, x, stride, groups, act):
        w = sd[f'{prefix}.0.weight']
        y = F.conv2d(x, w, None, stride, w.shape[-1] // 2, 1, groups)
        y = F.batch_norm(y, sd[f'{prefix}.1.running_mean'], sd[f'{prefix}.1.running_var'],
                         sd[f'{prefix}.1.weight'], sd[f'{prefix}.1.bias'], False, 0.0, 1e-5)
        return F.relu6(y) if act else y

    x = cbr('features.0', x, 2, 1, True)
    settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1)]
    idx, cin = 1, 32
    for t, c, n, s in settings:
        for i in range(n):
            stride = s if i == 0 else 1
            p, y, j = f'features.{idx}.conv', x, 0
            if t != 1:
                y, j = cbr(f'{p}.0', y, 1, 1, True), 1
            y = cbr(f'{p}.{j}', y, stride, y.shape[1], True)
            w = sd[f'{p}.{j + 1}.weight']
            y = F.conv2d(y, w)
            y = F.batch_norm(y, sd[f'{p}.{j + 2}.running_mean'], sd[f'{p}.{j + 2}.running_var'],
                             sd[f'{p}.{j + 2}.weight'], sd[f'{p}.{j + 2}.bias'], False, 0.0, 1e-5)
            x = x + y if stride == 1 and cin == c else y
            cin, idx = c, idx + 1
    return cbr('features.18', x, 1, 1, True)


def test_features_equal_reference(ckpt):
    net = MobileNetV2(out_indices=(7,))
    net.eval()
    fc = load_imagenet_mobilenet_v2(net, ckpt)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = _reference_features(ckpt, x)
        got = net(x)[-1]
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)
        logits = PooledClassifier(net, fc)(x)
        torch.testing.assert_close(logits, F.linear(ref.mean((2, 3)), ckpt['classifier.1.weight'],
                                                    ckpt['classifier.1.bias']), rtol=0, atol=1e-4)
    assert fc.weight.shape == (1000, 1280)


def test_mismatch_names_first_key_and_shape(ckpt):
    net = MobileNetV2(widen_factor=0.5)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(CheckpointMismatchError, match=r"'conv1.conv.weight' has shape \(16, 3, 3, 3\).*"
                                                      r"'features.0.0.weight', has shape \(32, 3, 3, 3\)"):
        load_imagenet_mobilenet_v2(net, ckpt)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # nothing copied


def test_too_few_tensors_named(ckpt):
    short = {k: v for k, v in ckpt.items() if not k.startswith('features.18.')}
    with pytest.raises(CheckpointMismatchError, match=r"backbone key 'conv2.conv.weight' \(1280, 320, 1, 1\)"):
        load_imagenet_mobilenet_v2(MobileNetV2(), short)


def test_registered_backbone_initializes_from_imagenet(ckpt):
    from mmdet.registry import MODELS

    from fqn_det.convert import quantize_module
    from fqn_det.nn import QBuilder
    from fqn_det.nn.qmobilenet import QMobileNetV2
    from fqn_det.quant import QuantConfig
    net = MODELS.build(dict(type='ImageNetMobileNetV2', out_indices=(7,)))
    net.init_weights()
    assert torch.equal(net.conv1.conv.weight, ckpt['features.0.0.weight'])
    assert torch.equal(net.conv2.bn.running_var, ckpt['features.18.1.running_var'])
    assert type(quantize_module(net, QBuilder(QuantConfig()), 'backbone')) is QMobileNetV2


def test_registered_backbone_refuses_a_checkpoint_that_does_not_fit(tmp_path):
    from mmdet.registry import MODELS
    net = MODELS.build(dict(type='ImageNetMobileNetV2', widen_factor=0.5))
    with pytest.raises(CheckpointMismatchError, match=r"'conv1.conv.weight' has shape \(16, 3, 3, 3\)"):
        net.init_weights()
    missing = MODELS.build(dict(type='ImageNetMobileNetV2', checkpoint=str(tmp_path / 'none.pth')))
    with pytest.raises(FileNotFoundError, match='none.pth'):
        missing.init_weights()
