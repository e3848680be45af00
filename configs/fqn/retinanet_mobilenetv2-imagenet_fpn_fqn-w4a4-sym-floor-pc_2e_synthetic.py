# The recommended W4A4 recipe on the ImageNet-initialized reference RetinaNet-MobileNetV2 (not in the
# FQN paper): symmetric per-channel weights, the score floor and per-channel head-output ranges.
_base_ = './retinanet_mobilenetv2-imagenet_fpn_fqn-w4a4_2e_synthetic.py'

model = dict(quant_cfg=dict(
    weight=dict(symmetric=True),
    overrides=[
        dict(pattern='bbox_head.retina_cls', gamma=1.0, floor='score_thr'),
        dict(pattern='bbox_head.retina_*', a_per_channel=True),
    ]))
