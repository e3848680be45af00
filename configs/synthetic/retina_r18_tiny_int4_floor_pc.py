# retina_r18_tiny_int4_score_floor.py with one activation range per output channel of the head
# outputs (not in the FQN paper; see configs/retina_int4_floor_pc.py and the README).
_base_ = './retina_r18_tiny_int4.py'

model = dict(quant_cfg=dict(overrides=[
    dict(pattern='bbox_head.retina_cls', gamma=1.0, floor='score_thr'),
    dict(pattern='bbox_head.retina_*', a_per_channel=True),
]))
