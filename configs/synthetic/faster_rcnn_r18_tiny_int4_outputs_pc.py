# faster_rcnn_r18_tiny_int4.py with one activation range per output channel of the head outputs
# (not in the FQN paper; see configs/faster_rcnn_int4_outputs_pc.py and the README).
_base_ = './faster_rcnn_r18_tiny_int4.py'

model = dict(quant_cfg=dict(overrides=[
    dict(pattern=p, a_per_channel=True)
    for p in ('rpn_head.rpn_cls', 'rpn_head.rpn_reg', 'roi_head.bbox_head.fc_cls', 'roi_head.bbox_head.fc_reg')
]))
