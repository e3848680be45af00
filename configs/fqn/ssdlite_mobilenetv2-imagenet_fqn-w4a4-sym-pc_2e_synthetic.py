# The recommended W4A4 recipe on the ImageNet-initialized reference SSDLite (not in the FQN paper):
# symmetric per-channel weights and one range per output channel of the head outputs. SSD's softmax
# classification has no score-threshold floor (that fix is for sigmoid heads such as RetinaNet's).
_base_ = './ssdlite_mobilenetv2-imagenet_fqn-w4a4_2e_synthetic.py'

model = dict(quant_cfg=dict(
    weight=dict(symmetric=True),
    overrides=[dict(pattern=p, a_per_channel=True) for p in ('bbox_head.cls_convs.*.1', 'bbox_head.reg_convs.*.1')]))
