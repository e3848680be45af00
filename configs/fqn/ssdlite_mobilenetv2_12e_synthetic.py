# Small full-precision SSDLite (MobileNetV2 width 0.5, depthwise-separable SSD neck and head,
# ReLU6) for the generated reference dataset (128 px images); from scratch (BN trains).
#   python tools/train.py configs/fqn/ssdlite_mobilenetv2_12e_synthetic.py
_base_ = ['./retinanet_r18-tiny_fpn_12e_synthetic.py']

norm_cfg = dict(type='BN', eps=0.001, momentum=0.03)
model = dict(
    _delete_=True,
    type='SingleStageDetector',
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                           bgr_to_rgb=True, pad_size_divisor=32),
    backbone=dict(type='MobileNetV2', widen_factor=0.5, out_indices=(4, 7), norm_cfg=norm_cfg, norm_eval=False,
                  init_cfg=None),
    neck=dict(type='SSDNeck', in_channels=(48, 1280), out_channels=(48, 1280, 256, 128), level_strides=(2, 2),
              level_paddings=(1, 1), l2_norm_scale=None, use_depthwise=True, norm_cfg=norm_cfg,
              act_cfg=dict(type='ReLU6')),
    bbox_head=dict(
        type='SSDHead', in_channels=(48, 1280, 256, 128), num_classes=5, use_depthwise=True, norm_cfg=norm_cfg,
        act_cfg=dict(type='ReLU6'),
        # strides 16, 32 (backbone), 64, 128 (neck) at 128 px
        anchor_generator=dict(type='SSDAnchorGenerator', scale_major=False, input_size=128,
                              strides=[16, 32, 64, 128], ratios=[[2, 3], [2, 3], [2, 3], [2, 3]],
                              min_sizes=[12, 28, 56, 88], max_sizes=[28, 56, 88, 128]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0],
                        target_stds=[0.1, 0.1, 0.2, 0.2])),
    train_cfg=dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.,
                                 ignore_iof_thr=-1, gt_max_assign_all=False),
                   sampler=dict(type='PseudoSampler'), smoothl1_beta=1., allowed_border=-1, pos_weight=-1,
                   neg_pos_ratio=3, debug=False),
    test_cfg=dict(nms_pre=1000, nms=dict(type='nms', iou_threshold=0.45), min_bbox_size=0, score_thr=0.02,
                  max_per_img=100))
