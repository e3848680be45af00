# The recommended W4A4 RetinaNet recipe (not in the FQN paper): retinanet_r50_fpn_fqn-w4a4_3e_coco.py
# with symmetric per-channel weights (the best-measuring weight scheme, and the faster one in ONNX
# Runtime), the score floor on the classification outputs and per-channel head-output ranges
# (docs/quant_config.md).
_base_ = './retinanet_r50_fpn_fqn-w4a4_3e_coco.py'

model = dict(quant_cfg=dict(
    weight=dict(symmetric=True),
    overrides=[
        dict(pattern='bbox_head.retina_cls', gamma=1.0, floor='score_thr'),
        dict(pattern='bbox_head.retina_*', a_per_channel=True),
    ]))
