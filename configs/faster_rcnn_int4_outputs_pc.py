# faster_rcnn_int4.py with one activation range per output channel of the head outputs (not in the
# FQN paper; README, "Head outputs at 4 bits"): the RPN's and the box head's classification and box
# outputs are dequantized for decoding and NMS, never read by an integer layer.
_base_ = './faster_rcnn_int4.py'

model = dict(quant_cfg=dict(overrides=[
    dict(pattern=p, a_per_channel=True)
    for p in ('rpn_head.rpn_cls', 'rpn_head.rpn_reg', 'roi_head.bbox_head.fc_cls', 'roi_head.bbox_head.fc_reg')
]))
