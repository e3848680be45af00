"""mmdet 3.3's SSDHead predicts once the compat patch gives it ``loss_cls``."""
import torch
from mmdet.models.dense_heads import SSDHead
from mmdet.structures import DetDataSample
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

from fqn_det import compat


def test_ssd_head_predicts():
    compat.install()
    head = SSDHead(num_classes=3, in_channels=(8, 8), use_depthwise=True,
                   anchor_generator=dict(type='SSDAnchorGenerator', scale_major=False, input_size=64,
                                         strides=[16, 32], ratios=[[2], [2]], min_sizes=[12, 28],
                                         max_sizes=[28, 64]),
                   test_cfg=ConfigDict(nms_pre=100, nms=dict(type='nms', iou_threshold=0.45), min_bbox_size=0,
                                       score_thr=0.0, max_per_img=10))
    head.eval()
    assert head.loss_cls is None  # no loss module: "no custom classification channels"
    feats = (torch.randn(1, 8, 4, 4), torch.randn(1, 8, 2, 2))
    with torch.no_grad():
        res = head.predict(feats, [DetDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(64, 64),
                                                               scale_factor=(1.0, 1.0)))])
    assert isinstance(res[0], InstanceData) and len(res[0]) <= 10
    head.loss_cls = torch.nn.Identity()  # a registered module is what it returns
    assert isinstance(head.loss_cls, torch.nn.Identity)
