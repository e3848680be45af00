# faster-rcnn_r18-tiny_fpn_fqn-w4a4_2e_synthetic.py with one activation range per output channel of
# the head outputs (not in the FQN paper; see faster-rcnn_r50_fpn_fqn-w4a4-pc_3e_coco.py).
_base_ = './faster-rcnn_r18-tiny_fpn_fqn-w4a4_2e_synthetic.py'

model = dict(quant_cfg=dict(overrides=[
    dict(pattern=p, a_per_channel=True)
    for p in ('rpn_head.rpn_cls', 'rpn_head.rpn_reg', 'roi_head.bbox_head.fc_cls', 'roi_head.bbox_head.fc_reg')
]))
