# retinanet_r18-tiny_fpn_fqn-w4a4-floor_2e_synthetic.py with one activation range per output channel
# of the head outputs (not in the FQN paper; see retinanet_r50_fpn_fqn-w4a4-floor-pc_3e_coco.py).
_base_ = './retinanet_r18-tiny_fpn_fqn-w4a4_2e_synthetic.py'

model = dict(quant_cfg=dict(overrides=[
    dict(pattern='bbox_head.retina_cls', gamma=1.0, floor='score_thr'),
    dict(pattern='bbox_head.retina_*', a_per_channel=True),
]))
