# retina_r18_tiny_int4.py with one activation range per output channel of the head outputs, and
# no score floor (not in the FQN paper; see configs/retina_int4_floor_pc.py and the README).
_base_ = './retina_r18_tiny_int4.py'

model = dict(quant_cfg=dict(overrides=[dict(pattern='bbox_head.retina_*', a_per_channel=True)]))
