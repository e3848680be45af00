# retinanet_r18-tiny_fpn_fqn-w4a4_2e_synthetic.py with the classification outputs ranged from the
# score threshold up (not in the FQN paper; see retinanet_r50_fpn_fqn-w4a4-floor_3e_coco.py).
_base_ = './retinanet_r18-tiny_fpn_fqn-w4a4_2e_synthetic.py'

model = dict(quant_cfg=dict(overrides=[dict(pattern='bbox_head.retina_cls', gamma=1.0, floor='score_thr')]))
