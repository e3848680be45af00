# retina_int4.py with RetinaNet's classification outputs ranged from the detector's own score
# threshold up (not in the FQN paper; README, "Classification outputs at 4 bits"): logits under
# logit(test_cfg.score_thr) are discarded before NMS whatever their value, so the 16 levels go to
# the logits that can become detections, and the top is not clipped (gamma=1 there).
_base_ = './retina_int4.py'

model = dict(quant_cfg=dict(overrides=[dict(pattern='bbox_head.retina_cls', gamma=1.0, floor='score_thr')]))
