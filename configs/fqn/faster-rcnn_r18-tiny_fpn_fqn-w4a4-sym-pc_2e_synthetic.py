# The recommended W4A4 recipe on the reference Faster R-CNN (not in the FQN paper): symmetric
# per-channel weights and per-channel head-output ranges.
_base_ = './faster-rcnn_r18-tiny_fpn_fqn-w4a4_2e_synthetic.py'

model = dict(quant_cfg=dict(
    weight=dict(symmetric=True),
    overrides=[
        dict(pattern=p, a_per_channel=True)
        for p in ('rpn_head.rpn_cls', 'rpn_head.rpn_reg', 'roi_head.bbox_head.fc_cls', 'roi_head.bbox_head.fc_reg')
    ]))
