# Small Faster R-CNN (narrow ResNet-18 + FPN) for the generated reference dataset; trains from
# scratch on 2 CPU cores (so BN trains: norm_eval=False).
_base_ = 'mmdet::_base_/models/faster-rcnn_r50_fpn.py'
model = dict(
    backbone=dict(depth=18, base_channels=32, frozen_stages=-1, norm_eval=False, init_cfg=None),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=64),
    rpn_head=dict(in_channels=64, feat_channels=64, anchor_generator=dict(scales=[4])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(num_classes=5, in_channels=64, fc_out_channels=256)),
    # fewer proposals and sampled RoIs than mmdet's COCO defaults (2000 / 512 per image): at most
    # 6 objects per small image, and mmcv's RoIAlign on CPU dominates the iteration time otherwise
    train_cfg=dict(rpn_proposal=dict(nms_pre=1000, max_per_img=150), rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=100)))
