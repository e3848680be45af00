"""DFQ's headline, qualitatively, on real ImageNet MobileNetV2 weights and real photos.

At 6-bit per-tensor weights the plain model breaks (BN folding leaves channel
ranges far apart); DFQ with data-free ranges and no data recovers at least half
of the gap to per-channel weights, in dB of logit SQNR against FP32.
"""
import copy

import pytest
import torch
from mmdet.models.backbones import MobileNetV2

from fqn_det.dfq.ptq import post_training_quantize
from fqn_det.models.imagenet_mobilenet import PooledClassifier, QuantizedClassifier, load_imagenet_mobilenet_v2
from fqn_det.utils.imagenet_eval import logit_sqnr, photo_crops, top1_agreement


@pytest.fixture(scope='module')
def setup():
    net = MobileNetV2(out_indices=(7,))
    fc = load_imagenet_mobilenet_v2(net)  # from the installed weights package (scripts/setup_env.sh)
    net.eval()
    x = photo_crops(12, size=160, seed=0)
    with torch.no_grad():
        ref = PooledClassifier(net, fc)(x)
    return net, fc, x, ref


def _sqnr(setup, per_channel, dfq):
    net, fc, x, ref = setup
    m = QuantizedClassifier(copy.deepcopy(net), fc, dict(weight=dict(bits=6, per_channel=per_channel),
                                                         act=dict(bits=8)))
    rep = post_training_quantize(m.eval(), equalization=dfq, absorption=dfq,
                                 bias_correction='analytic' if dfq else 'none', ranges='data-free')
    with torch.no_grad():
        y = m(x)
    return logit_sqnr(ref, y), top1_agreement(ref, y), rep


def test_dfq_recovers_the_per_tensor_collapse(setup):
    plain, plain_top1, _ = _sqnr(setup, False, False)
    dfq, dfq_top1, rep = _sqnr(setup, False, True)
    pc, _, _ = _sqnr(setup, True, False)
    assert plain < 3.0 < pc  # plain per-tensor W6 has collapsed, per-channel has not
    assert dfq - plain >= 0.5 * (pc - plain), (plain, dfq, pc)
    assert dfq_top1 > plain_top1
    assert len(rep['pairs']) == 34 and len(rep['relu6_replaced']) == 34  # stem + 16 expand + 17 depthwise
