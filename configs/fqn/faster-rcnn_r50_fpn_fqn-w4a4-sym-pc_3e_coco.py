# The recommended W4A4 Faster R-CNN recipe (not in the FQN paper): faster-rcnn_r50_fpn_fqn-w4a4_3e_coco.py
# with symmetric per-channel weights and per-channel head-output ranges (docs/quant_config.md).
_base_ = './faster-rcnn_r50_fpn_fqn-w4a4_3e_coco.py'

model = dict(quant_cfg=dict(
    weight=dict(symmetric=True),
    overrides=[
        dict(pattern=p, a_per_channel=True)
        for p in ('rpn_head.rpn_cls', 'rpn_head.rpn_reg', 'roi_head.bbox_head.fc_cls', 'roi_head.bbox_head.fc_reg')
    ]))
