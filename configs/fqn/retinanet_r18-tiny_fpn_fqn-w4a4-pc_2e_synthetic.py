# retinanet_r18-tiny_fpn_fqn-w4a4_2e_synthetic.py with one activation range per output channel of
# the head outputs, and no score floor (not in the FQN paper).
_base_ = './retinanet_r18-tiny_fpn_fqn-w4a4_2e_synthetic.py'

model = dict(quant_cfg=dict(overrides=[dict(pattern='bbox_head.retina_*', a_per_channel=True)]))
