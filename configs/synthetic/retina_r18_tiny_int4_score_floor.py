# retina_r18_tiny_int4.py with the classification outputs ranged from the score threshold up
# (not in the FQN paper; see configs/retina_int4_score_floor.py and the README).
_base_ = './retina_r18_tiny_int4.py'

model = dict(quant_cfg=dict(overrides=[dict(pattern='bbox_head.retina_cls', gamma=1.0, floor='score_thr')]))
