# faster-rcnn_r50_fpn_fqn-w4a4_3e_coco.py with one activation range per output channel of the head
# outputs (not in the FQN paper; docs/quant_config.md): the RPN's and the box head's classification
# and box outputs are dequantized for decoding and NMS, never read by an integer layer.
_base_ = './faster-rcnn_r50_fpn_fqn-w4a4_3e_coco.py'

model = dict(quant_cfg=dict(overrides=[
    dict(pattern=p, a_per_channel=True)
    for p in ('rpn_head.rpn_cls', 'rpn_head.rpn_reg', 'roi_head.bbox_head.fc_cls', 'roi_head.bbox_head.fc_reg')
]))
