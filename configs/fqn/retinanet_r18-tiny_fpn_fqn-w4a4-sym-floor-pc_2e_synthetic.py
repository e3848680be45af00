# The recommended W4A4 recipe on the reference RetinaNet (not in the FQN paper; `make demo` runs it
# beside the paper's): symmetric per-channel weights, the score floor and per-channel head-output
# ranges (see retinanet_r50_fpn_fqn-w4a4-sym-floor-pc_3e_coco.py).
_base_ = './retinanet_r18-tiny_fpn_fqn-w4a4_2e_synthetic.py'

model = dict(quant_cfg=dict(
    weight=dict(symmetric=True),
    overrides=[
        dict(pattern='bbox_head.retina_cls', gamma=1.0, floor='score_thr'),
        dict(pattern='bbox_head.retina_*', a_per_channel=True),
    ]))
